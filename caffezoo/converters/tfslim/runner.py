"""Runs a TF-slim checkpoint in TensorFlow (graph mode, the checkpoint restored into the slim
net) and records named scopes: validate's source side.

A plan's module is a slim scope; its recorded (input, output) are the tensors of the scope's
main op: a convolution's input (before an explicit Pad) and output (after its bias), a batch
norm's normalised output (before the ReLU), a pooling's output, the classifier's input and
logits. Tensors come back NCHW, as Caffe's blobs.
"""

from __future__ import annotations

import numpy as np

from caffezoo.card_plan import Op, Plan
from caffezoo.contract import InputContract
from caffezoo.converters.common import Checkpoint
from caffezoo.converters.tfslim.nets import BACKGROUND_CLASSES, SlimNet
from caffezoo.errors import ConversionError
from caffezoo.source_runner import SourceRun

# TF's inception preprocessing, x / 127.5 - 1 on RGB pixels 0..255
TF_INPUT = InputContract(channel_order="RGB", mean=(127.5, 127.5, 127.5),
                         std=(127.5, 127.5, 127.5))
_MAIN_OPS = ("Conv2D", "MatMul", "FusedBatchNormV3", "FusedBatchNorm", "MaxPool", "AvgPool")


def _nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


class SlimSource:
    """A slim net with the checkpoint restored, at one input size."""

    def __init__(self, ckpt: Checkpoint, plan: Plan, net: SlimNet, size: int) -> None:
        from caffezoo.frameworks import import_tensorflow

        tf = import_tensorflow()
        self.ckpt, self.plan, self.net, self.size = ckpt, plan, net, size
        self.input_norm = self.effective_norm = TF_INPUT
        linear = next(a for a in plan.assigns if a.op == Op.LINEAR)
        self.classifier, self.skip = linear.source, linear.skip_rows
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = tf.compat.v1.placeholder(tf.float32, (None, size, size, 3), name="input")
            net.build(self.x, is_training=False)
            variables = tf.compat.v1.global_variables()
            saver = tf.compat.v1.train.Saver(var_list=variables)
            self.session = tf.compat.v1.Session(graph=self.graph)
            try:
                saver.restore(self.session, ckpt.path)
            except Exception as err:
                first = " ".join(str(err).split())[:300]
                raise ConversionError(f"{ckpt.path}: does not restore into TF-slim's "
                                      f"{net.scope}: {first}") from None
        self._ops = {}
        doubled = f"{net.scope}/{net.scope}/"
        for op in self.graph.get_operations():
            if op.type not in _MAIN_OPS and op.type != "BiasAdd":
                continue
            scope, _, _ = op.name.rpartition("/")
            if scope.startswith(doubled):  # slim re-enters the model's name scope for ops
                scope = scope[len(net.scope) + 1:]
            self._ops.setdefault(scope, {})[op.type] = op

    def _tensors(self, scope: str):
        ops = self._ops.get(scope)
        if not ops:
            return None
        main = next((ops[t] for t in _MAIN_OPS if t in ops), None)
        if main is None:
            return None
        inp = main.inputs[0]
        if inp.op.type == "Pad":  # conv2d_same pads explicitly: compare the unpadded input
            inp = inp.op.inputs[0]
        out = ops["BiasAdd"].outputs[0] if "BiasAdd" in ops else main.outputs[0]
        return inp, out

    def run(self, x: np.ndarray, record: set[str] | None = None) -> SourceRun:
        wanted = set(record or ()) | {self.classifier}
        fetch = {}
        for scope in wanted:
            pair = self._tensors(scope)
            if pair is not None:
                fetch[scope] = pair
        if self.classifier not in fetch:
            raise ConversionError(f"{self.ckpt.path}: no classifier {self.classifier!r} in "
                                  f"the {self.net.scope} graph")
        nhwc = np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))
        values = self.session.run(fetch, {self.x: nhwc})
        records = {}
        for scope, (inp, out) in values.items():
            if scope == self.classifier:
                out = out.reshape(len(out), -1)[:, self.skip:]
            records[scope] = (_nchw(inp), _nchw(out))
        return SourceRun(records[self.classifier][1], records)


__all__ = ["BACKGROUND_CLASSES", "SlimSource", "SourceRun", "TF_INPUT"]
