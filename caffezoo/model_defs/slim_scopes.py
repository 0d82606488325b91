"""TF-slim argument scopes for the nets the `tf-slim` source kind builds.

They reproduce the published nets' settings (batch norm eps, decay, whether it has a gamma) with
`updates_collections=None`: tf_slim 1.1.0's default collection path needs a Keras module TF 2.21
no longer ships (docs/conversion.md). Every function imports TensorFlow lazily.
"""

from __future__ import annotations

INCEPTION_BN_EPS = 0.001  # slim's inception_arg_scope: no gamma (scale=False)
RESNET_BN_EPS = 1e-5  # slim's resnet_arg_scope: with gamma (batch_norm_scale=True)


def _slim():
    from caffezoo.frameworks import import_tf_slim

    return import_tf_slim()


def inception_scope(bn_decay: float = 0.9997):
    """conv2d with batch norm (eps 0.001, no gamma) and ReLU, as slim's inception_arg_scope."""
    slim = _slim()
    params = {"decay": bn_decay, "epsilon": INCEPTION_BN_EPS, "scale": False,
              "updates_collections": None, "fused": True}
    init = slim.variance_scaling_initializer()
    return _scope(slim, params, init)


def resnet_scope(bn_decay: float = 0.997):
    """conv2d with batch norm (eps 1e-5, with gamma) and ReLU, max pools SAME, as slim's
    resnet_arg_scope."""
    slim = _slim()
    params = {"decay": bn_decay, "epsilon": RESNET_BN_EPS, "scale": True,
              "updates_collections": None, "fused": True}
    init = slim.variance_scaling_initializer()
    return _scope(slim, params, init, max_pool_same=True)


def _scope(slim, params: dict, init, max_pool_same: bool = False):
    from contextlib import ExitStack

    import tensorflow as tf

    stack = ExitStack()
    stack.enter_context(slim.arg_scope(
        [slim.conv2d], weights_initializer=init, activation_fn=tf.nn.relu,
        normalizer_fn=slim.batch_norm, normalizer_params=params))
    stack.enter_context(slim.arg_scope([slim.batch_norm], **params))
    if max_pool_same:
        stack.enter_context(slim.arg_scope([slim.max_pool2d], padding="SAME"))
    return stack
