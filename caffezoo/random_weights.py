"""Seeded random weights for a net, for demos, timing and tests: nets need some weights to run,
and speed does not depend on their values as long as they stay in a normal range."""

from __future__ import annotations

import numpy as np

from caffezoo.analysis import analyze
from caffezoo.proto import caffe_pb2


def random_weights(net: caffe_pb2.NetParameter, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Float32 blobs, in the shapes the net implies, for every layer that has some.

    Scaled so that activations stay in a normal range through a deep net (no overflow, no
    denormals, probabilities neither flat nor one-hot): convolution and inner product weights
    He-normal (std sqrt(2 / fan_in)), small biases, BatchNorm statistics near mean 0 /
    variance 1 (scale factor 1), Scale gammas below 1 so that residual sums do not grow."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    for layer in analyze(net).layers:
        if not layer.param_shapes:
            continue
        blobs = []
        for i, shape in enumerate(layer.param_shapes):
            if layer.type == "BatchNorm":
                blob = (rng.normal(0.0, 0.1, shape), rng.uniform(0.5, 1.5, shape),
                        np.ones(shape))[i]
            elif layer.type == "Scale":
                blob = rng.uniform(0.5, 0.9, shape) if i == 0 else rng.normal(0.0, 0.05, shape)
            elif i == 0 and len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                blob = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
            else:
                blob = rng.normal(0.0, 0.01, shape)
            blobs.append(blob.astype(np.float32))
        weights[layer.name] = blobs
    return weights
