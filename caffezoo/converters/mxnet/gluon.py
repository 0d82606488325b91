"""Seeded random Gluon model-zoo checkpoints (NOT trained weights), for tests, benchmarks and
trying the pipeline: `mxnet.gluon.model_zoo.vision.get_model(NAME, pretrained=False)`,
Xavier weights (He-normal without BatchNorm), random BatchNorm gamma/beta, moving statistics
set from one training-mode pass over a random batch and then perturbed (so every BatchNorm has
its own non-trivial mean and variance and activations stay in a normal range through deep nets),
hybridized and written with
`HybridBlock.export` as MXNet 1.9.1 does: PREFIX-symbol.json + PREFIX-0000.params.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GLUON_MODELS = ("resnet50_v2", "resnet101_v2", "inceptionv3", "mobilenet1.0", "mobilenetv2_1.0",
                "squeezenet1.1", "densenet121", "vgg16_bn")


def export_random_gluon(name: str, prefix: str | Path, size: int = 224, seed: int = 0,
                        epoch: int = 0) -> str:
    """Build, randomise and export `name`; returns PREFIX. Needs MXNet."""
    from caffezoo.frameworks import import_mxnet

    mx = import_mxnet()
    from mxnet import autograd
    from mxnet.gluon import nn
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    net = vision.get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    bns = []

    def collect(block):
        if isinstance(block, nn.BatchNorm):
            bns.append(block)
    net.apply(collect)
    for bn in bns:
        bn._kwargs["momentum"] = 0.0  # the training pass below sets the moving stats
    x = mx.nd.array(rng.normal(0, 1, (4, 3, size, size)).astype(np.float32))
    net(x)  # create the parameters' shapes
    # Without BatchNorm (SqueezeNet) Xavier weights shrink activations layer by layer to
    # outputs near 1e-5: such nets get He-normal weights. Nets with BatchNorm keep Xavier (He
    # would make a pre-activation ResNet's unnormalised residual stream grow to 1e7).
    for param in net.collect_params().values() if not bns else ():
        if param.name.endswith("weight") and len(param.shape) > 1:
            fan_in = int(np.prod(param.shape[1:]))
            param.set_data(mx.nd.array(
                rng.normal(0, np.sqrt(2.0 / fan_in), param.shape).astype(np.float32)))
    for bn in bns:
        c = bn.gamma.shape[0]
        bn.gamma.set_data(mx.nd.array(rng.uniform(0.5, 1.5, c).astype(np.float32)))
        bn.beta.set_data(mx.nd.array(rng.normal(0, 0.2, c).astype(np.float32)))
    with autograd.record(train_mode=True):
        net(x)
    for bn in bns:
        c = bn.gamma.shape[0]
        mean = bn.running_mean.data().asnumpy()
        var = bn.running_var.data().asnumpy()
        bn.running_mean.set_data(mx.nd.array(
            (mean + rng.normal(0, 0.1, c) * np.sqrt(var)).astype(np.float32)))
        bn.running_var.set_data(mx.nd.array(
            (var * rng.uniform(0.7, 1.3, c) + 1e-3).astype(np.float32)))
        bn._kwargs["momentum"] = 0.9
    net.hybridize()
    net(x[:1])
    prefix = str(prefix)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    net.export(prefix, epoch=epoch)
    return prefix
