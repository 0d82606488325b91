"""Seeded random TF-slim checkpoints (NOT trained weights) for demos and tests.

The slim net is built in training mode at its default size (so the auxiliary head's kernel has
its released shape), weights drawn by slim's initialisers under the seed, batch-norm betas (and
gammas where the net has them) and every bias drawn at random; one training-mode pass over a
random batch with decay 0 sets the moving statistics to that batch's, which are then perturbed
per channel (means shifted, variances scaled by 0.5-2). A conversion that mixed up mean and
variance, ignored eps, or reordered channels cannot pass on such a model. The files are written
into a temporary folder and moved into place (`.index` last).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from caffezoo.converters.tfslim.nets import SlimNet


def save_random_checkpoint(net: SlimNet, prefix: str | Path, seed: int = 0,
                           calib_batch: int = 2, size: int | None = None) -> str:
    """Write the checkpoint `prefix` (.index + .data files); returns the prefix. `size`
    (default: the net's) is the calibration input size; a smaller one is quicker, but sizes
    the auxiliary head's kernel (which no conversion uses) unlike the released files."""
    from caffezoo.frameworks import import_tensorflow

    tf = import_tensorflow()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        size = size or net.default_size
        x = tf.compat.v1.placeholder(tf.float32, (calib_batch, size, size, 3))
        logits, _ = net.build(x, is_training=True, aux=bool(net.aux_scope), bn_decay=0.0)
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for v in variables:
                name, shape = v.op.name, v.shape.as_list()
                if name.endswith("/beta") or name.endswith("/biases"):
                    v.load(0.2 * rng.standard_normal(shape).astype(np.float32), sess)
                elif name.endswith("/gamma"):
                    v.load(rng.uniform(0.5, 1.5, shape).astype(np.float32), sess)
            sess.run(logits, {x: rng.uniform(-1, 1, (calib_batch, size, size, 3))})
            by_name = {v.op.name: v for v in variables}
            for name, v in by_name.items():
                if not name.endswith("/moving_variance"):
                    continue
                mean_v = by_name[name.removesuffix("variance") + "mean"]
                var, mean = sess.run(v), sess.run(mean_v)
                std = np.sqrt(np.maximum(var, 1e-6))
                v.load((var * rng.uniform(0.5, 2.0, var.shape)).astype(np.float32), sess)
                mean_v.load((mean + 0.2 * std * rng.standard_normal(var.shape)
                             ).astype(np.float32), sess)
            with tempfile.TemporaryDirectory(dir=prefix.parent, prefix=".ckpt-") as tmp:
                saver = tf.compat.v1.train.Saver(var_list=variables)
                saved = saver.save(sess, os.path.join(tmp, "model"), write_meta_graph=False,
                                   write_state=False)
                files = sorted(Path(tmp).iterdir(), key=lambda p: p.suffix == ".index")
                for f in files:
                    os.replace(f, str(prefix) + f.name[len(Path(saved).name):])
    return str(prefix)
