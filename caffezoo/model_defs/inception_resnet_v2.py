"""TF-slim's Inception-ResNet-v2 (Szegedy et al. 2017), as the released checkpoint
`inception_resnet_v2_2016_08_30` names it: scope `InceptionResnetV2`, stem `Conv2d_1a_3x3` ...
`MaxPool_5a_3x3`, `Mixed_5b`, ten 35x35 blocks `Repeat/block35_1..10` (scale 0.17), `Mixed_6a`,
twenty 17x17 blocks `Repeat_1/block17_1..20` (scale 0.1), `Mixed_7a`, nine 8x8 blocks
`Repeat_2/block8_1..9` (scale 0.2), a last `Block8` (scale 1, no ReLU), `Conv2d_7b_1x1`, the
auxiliary head `AuxLogits` on the 17x17 map and `Logits/Logits`.

Convolutions carry batch norm (eps 0.001, no gamma) and ReLU from
`slim_scopes.inception_scope()`, except each block's `Conv2d_1x1` projection (`up`): bias, no
batch norm, no activation; the block adds `scale * up` to its input. The stem and reductions
use VALID padding (the released net's `align_feature_maps=False`), the rest SAME; the 3x3
average pooling of `Mixed_5b` excludes the padding. Written from the published architecture;
TensorFlow is imported only when a net is built.
"""

from __future__ import annotations

SCOPE = "InceptionResnetV2"
NUM_CLASSES = 1001  # index 0 = background
DEFAULT_IMAGE_SIZE = 299
BLOCKS = (("Repeat", "block35", 10, 0.17), ("Repeat_1", "block17", 20, 0.10),
          ("Repeat_2", "block8", 9, 0.20))


def _residual(slim, tf, x, scale, branches, relu: bool):
    mixed = tf.concat(branches, axis=3)
    up = slim.conv2d(mixed, x.get_shape()[3], 1, normalizer_fn=None, activation_fn=None,
                     scope="Conv2d_1x1")
    x = x + scale * up
    return tf.nn.relu(x) if relu else x


def block35(slim, tf, x, scale, scope, relu=True):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 32, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 32, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 32, 3, scope="Conv2d_0b_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(x, 32, 1, scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 48, 3, scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 64, 3, scope="Conv2d_0c_3x3")
        return _residual(slim, tf, x, scale, [b0, b1, b2], relu)


def block17(slim, tf, x, scale, scope, relu=True):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 192, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 128, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 160, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 192, [7, 1], scope="Conv2d_0c_7x1")
        return _residual(slim, tf, x, scale, [b0, b1], relu)


def block8(slim, tf, x, scale, scope, relu=True):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 192, 1, scope="Conv2d_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 192, 1, scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [1, 3], scope="Conv2d_0b_1x3")
            b1 = slim.conv2d(b1, 256, [3, 1], scope="Conv2d_0c_3x1")
        return _residual(slim, tf, x, scale, [b0, b1], relu)


_BLOCK_FNS = {"block35": block35, "block17": block17, "block8": block8}


def _repeat(slim, tf, x, repeat_scope, name, count, scale):
    with tf.compat.v1.variable_scope(repeat_scope):
        for i in range(1, count + 1):
            x = _BLOCK_FNS[name](slim, tf, x, scale, f"{name}_{i}")
    return x


def inception_resnet_v2(inputs, num_classes: int = NUM_CLASSES, is_training: bool = False,
                        create_aux_logits: bool = True, scope: str = SCOPE):
    """(logits (N, num_classes), end_points) for NHWC `inputs` scaled to [-1, 1]; build it
    inside `slim_scopes.inception_scope()`. The final pooling averages the whole map."""
    import tensorflow as tf

    from caffezoo.frameworks import import_tf_slim

    slim = import_tf_slim()
    ends = {}
    valid = "VALID"
    with tf.compat.v1.variable_scope(scope), \
            slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training), \
            slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d], stride=1,
                           padding="SAME"):
        x = slim.conv2d(inputs, 32, 3, stride=2, padding=valid, scope="Conv2d_1a_3x3")
        x = slim.conv2d(x, 32, 3, padding=valid, scope="Conv2d_2a_3x3")
        x = slim.conv2d(x, 64, 3, scope="Conv2d_2b_3x3")
        x = slim.max_pool2d(x, 3, stride=2, padding=valid, scope="MaxPool_3a_3x3")
        x = slim.conv2d(x, 80, 1, padding=valid, scope="Conv2d_3b_1x1")
        x = slim.conv2d(x, 192, 3, padding=valid, scope="Conv2d_4a_3x3")
        x = slim.max_pool2d(x, 3, stride=2, padding=valid, scope="MaxPool_5a_3x3")
        with tf.compat.v1.variable_scope("Mixed_5b"):
            with tf.compat.v1.variable_scope("Branch_0"):
                b0 = slim.conv2d(x, 96, 1, scope="Conv2d_1x1")
            with tf.compat.v1.variable_scope("Branch_1"):
                b1 = slim.conv2d(x, 48, 1, scope="Conv2d_0a_1x1")
                b1 = slim.conv2d(b1, 64, 5, scope="Conv2d_0b_5x5")
            with tf.compat.v1.variable_scope("Branch_2"):
                b2 = slim.conv2d(x, 64, 1, scope="Conv2d_0a_1x1")
                b2 = slim.conv2d(b2, 96, 3, scope="Conv2d_0b_3x3")
                b2 = slim.conv2d(b2, 96, 3, scope="Conv2d_0c_3x3")
            with tf.compat.v1.variable_scope("Branch_3"):
                b3 = slim.avg_pool2d(x, 3, stride=1, padding="SAME", scope="AvgPool_0a_3x3")
                b3 = slim.conv2d(b3, 64, 1, scope="Conv2d_0b_1x1")
            x = tf.concat([b0, b1, b2, b3], axis=3)
        x = _repeat(slim, tf, x, *BLOCKS[0])
        with tf.compat.v1.variable_scope("Mixed_6a"):
            with tf.compat.v1.variable_scope("Branch_0"):
                b0 = slim.conv2d(x, 384, 3, stride=2, padding=valid, scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_1"):
                b1 = slim.conv2d(x, 256, 1, scope="Conv2d_0a_1x1")
                b1 = slim.conv2d(b1, 256, 3, scope="Conv2d_0b_3x3")
                b1 = slim.conv2d(b1, 384, 3, stride=2, padding=valid, scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_2"):
                b2 = slim.max_pool2d(x, 3, stride=2, padding=valid, scope="MaxPool_1a_3x3")
            x = tf.concat([b0, b1, b2], axis=3)
        x = _repeat(slim, tf, x, *BLOCKS[1])
        ends["PreAuxLogits"] = x
        with tf.compat.v1.variable_scope("Mixed_7a"):
            with tf.compat.v1.variable_scope("Branch_0"):
                b0 = slim.conv2d(x, 256, 1, scope="Conv2d_0a_1x1")
                b0 = slim.conv2d(b0, 384, 3, stride=2, padding=valid, scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_1"):
                b1 = slim.conv2d(x, 256, 1, scope="Conv2d_0a_1x1")
                b1 = slim.conv2d(b1, 288, 3, stride=2, padding=valid, scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_2"):
                b2 = slim.conv2d(x, 256, 1, scope="Conv2d_0a_1x1")
                b2 = slim.conv2d(b2, 288, 3, scope="Conv2d_0b_3x3")
                b2 = slim.conv2d(b2, 320, 3, stride=2, padding=valid, scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_3"):
                b3 = slim.max_pool2d(x, 3, stride=2, padding=valid, scope="MaxPool_1a_3x3")
            x = tf.concat([b0, b1, b2, b3], axis=3)
        x = _repeat(slim, tf, x, *BLOCKS[2])
        x = block8(slim, tf, x, 1.0, "Block8", relu=False)
        x = slim.conv2d(x, 1536, 1, scope="Conv2d_7b_1x1")
        if create_aux_logits:
            with tf.compat.v1.variable_scope("AuxLogits"):
                aux = slim.avg_pool2d(ends["PreAuxLogits"], 5, stride=3, padding=valid,
                                      scope="Conv2d_1a_3x3")
                aux = slim.conv2d(aux, 128, 1, scope="Conv2d_1b_1x1")
                aux = slim.conv2d(aux, 768, aux.get_shape()[1:3], padding=valid,
                                  scope="Conv2d_2a_5x5")
                aux = slim.flatten(aux)
                ends["AuxLogits"] = slim.fully_connected(aux, num_classes, activation_fn=None,
                                                         scope="Logits")
        with tf.compat.v1.variable_scope("Logits"):
            x = slim.avg_pool2d(x, x.get_shape()[1:3], padding=valid, scope="AvgPool_1a_8x8")
            x = slim.flatten(x)
            x = slim.dropout(x, 0.8, scope="Dropout")
            logits = slim.fully_connected(x, num_classes, activation_fn=None, scope="Logits")
            ends["Logits"] = logits
    return logits, ends
