"""The OpenCV DNN runtime: `cv2.dnn.readNetFromCaffe`, OpenCV backend, CPU target.

OpenCV gets the prototxt as caffezoo re-wrote it and the weights as a caffemodel serialised by
caffezoo from the checked arrays, both from memory.

Reading blobs: OpenCV names a forward output by the *layer* that produces it, Caffe by the blob.
A blob's value after the forward pass is the output of the last layer whose top it is (for
`conv1` rewritten in place by `relu1`, the output of `relu1`), so each blob name maps to that
(layer, top index). The input blob is returned as given. OpenCV fuses layers (Convolution with
BatchNorm, Scale, ReLU); asked for an intermediate result of a fused chain written out of place
(a BatchNorm's own top, then a Scale's), 4.14 returns garbage, so a forward that asks for any
blob other than the net's outputs runs with fusion off (same results to fp32 noise, slower).
One more exception handled here: a second or later top of a multi-top layer (Slice)
can be overwritten by OpenCV's buffer reuse once the layers consuming it ran, so such blobs are
read in an extra forward pass that stops right after their layer.

Threads: `threads=` calls cv2.setNumThreads (process-wide).
"""

from __future__ import annotations

import numpy as np

from caffezoo import frameworks, netio
from caffezoo.errors import NetDefinitionError
from caffezoo.runtimes import CheckedNet, Runtime


class OpenCVRuntime(Runtime):
    backend = "opencv"

    def __init__(self, checked: CheckedNet, threads: int | None = None) -> None:
        super().__init__(checked, threads)
        cv2 = frameworks.import_cv2()
        self._cv2 = cv2
        if threads is not None:
            cv2.setNumThreads(int(threads))
        needs = [s.name for s in checked.analysis.layers if s.param_shapes]
        if checked.weights is None and needs:
            raise NetDefinitionError(f"{checked.prototxt}: OpenCV DNN needs weights (layer "
                                     f"'{needs[0]}' has learnable blobs); pass a .caffemodel")
        proto = np.frombuffer(checked.text().encode("utf-8"), dtype=np.uint8)
        try:
            if checked.weights is None:
                self.net = cv2.dnn.readNetFromCaffe(proto)
            else:
                # OpenCV cannot hold a 0-D blob (PReLU channel_shared): one value as (1,)
                weights = {name: [b.reshape(1) if b.ndim == 0 else b for b in blobs]
                           for name, blobs in checked.weights.items()}
                with_blobs = netio.attach_weights(checked.net, weights)
                model = np.frombuffer(with_blobs.SerializeToString(), dtype=np.uint8)
                self.net = cv2.dnn.readNetFromCaffe(proto, model)
                del with_blobs, model
                checked.weights = None  # OpenCV holds its own copy now; free ours
        except cv2.error as err:
            raise NetDefinitionError(f"{checked.prototxt}: OpenCV cannot load the net: "
                                     f"{_cv_reason(err)}") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._fused = True
        # blob -> (layer, output index) of its last writer
        self._producer: dict[str, tuple[str, int]] = {}
        # OpenCV 4.14's importer names some layers (Convolution) after their top blob
        cv_names = set(self.net.getLayerNames())
        for layer in checked.net.layer:
            if layer.type == "Input":
                continue
            name = layer.name
            if name not in cv_names and layer.top and layer.top[0] in cv_names:
                name = layer.top[0]
            for i, top in enumerate(layer.top):
                self._producer[top] = (name, i)

    def _forward(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        if self._fused and set(names) - set(self.output_names) - {self.input_name}:
            self.net.enableFusion(False)
            self._fused = False
        self.net.setInput(batch, self.input_name)
        wanted = [self._producer[n] for n in names if n != self.input_name]
        # One pass for every first output (OpenCV keeps those intact when asked for them). A
        # later output of a multi-top layer (Slice) can be overwritten by OpenCV's memory reuse
        # once its consumers ran, even when asked for (seen in 4.14), so each such layer gets a
        # pass of its own that stops right after it.
        passes = [list(dict.fromkeys(layer for layer, index in wanted if index == 0))]
        passes += [[layer] for layer in dict.fromkeys(lay for lay, index in wanted if index > 0)]
        outputs: dict[tuple[str, int], np.ndarray] = {}
        for layers in passes:
            if not layers:
                continue
            try:
                outs = self.net.forwardAndRetrieve(layers)
            except self._cv2.error as err:
                raise NetDefinitionError(f"{self.checked.prototxt}: OpenCV forward failed: "
                                         f"{_cv_reason(err)}") from None
            for layer, layer_outs in zip(layers, outs, strict=True):
                for index, out in enumerate(layer_outs):
                    if len(layers) == 1 or index == 0:
                        outputs[(layer, index)] = np.array(out, copy=True)
        result = {n: outputs[self._producer[n]] for n in names if n != self.input_name}
        if self.input_name in names:
            result[self.input_name] = batch
        return result


def _cv_reason(err: Exception) -> str:
    """OpenCV's error text is several lines; keep the one that says what went wrong."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[-1] if lines else type(err).__name__
