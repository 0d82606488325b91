"""TF-slim's Inception-v4 (Szegedy et al. 2017), as the released checkpoint
`inception_v4_2016_09_09` names it: scope `InceptionV4`, stem `Conv2d_1a_3x3` ... `Mixed_5a`,
four Inception-A blocks `Mixed_5b`..`Mixed_5e`, `Mixed_6a` (reduction A), seven Inception-B
blocks `Mixed_6b`..`Mixed_6h`, `Mixed_7a` (reduction B), three Inception-C blocks
`Mixed_7b`..`Mixed_7d`, the auxiliary head `AuxLogits` on `Mixed_6h` and `Logits/Logits`.

Every branch is `Branch_<i>` and every convolution `Conv2d_<id>_<k>x<k>` with batch norm
(eps 0.001, no gamma) and ReLU, from `slim_scopes.inception_scope()`. Stride-2 convolutions and
poolings are VALID, the rest SAME; the 3x3 average poolings (SAME) exclude the padding.
Written from the published architecture; TensorFlow is imported only when a net is built.
"""

from __future__ import annotations

SCOPE = "InceptionV4"
NUM_CLASSES = 1001  # index 0 = background
DEFAULT_IMAGE_SIZE = 299


def _block_a(slim, tf, x, scope):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 96, [1, 1], scope="Conv2d_0a_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 64, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 96, [3, 3], scope="Conv2d_0b_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(x, 64, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 96, [3, 3], scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 96, [3, 3], scope="Conv2d_0c_3x3")
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(x, [3, 3], scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 96, [1, 1], scope="Conv2d_0b_1x1")
        return tf.concat([b0, b1, b2, b3], axis=3)


def _reduction_a(slim, tf, x, scope):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 384, [3, 3], stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 192, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [3, 3], scope="Conv2d_0b_3x3")
            b1 = slim.conv2d(b1, 256, [3, 3], stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.max_pool2d(x, [3, 3], stride=2, padding="VALID", scope="MaxPool_1a_3x3")
        return tf.concat([b0, b1, b2], axis=3)


def _block_b(slim, tf, x, scope):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 384, [1, 1], scope="Conv2d_0a_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 192, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 256, [7, 1], scope="Conv2d_0c_7x1")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(x, 192, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 192, [7, 1], scope="Conv2d_0b_7x1")
            b2 = slim.conv2d(b2, 224, [1, 7], scope="Conv2d_0c_1x7")
            b2 = slim.conv2d(b2, 224, [7, 1], scope="Conv2d_0d_7x1")
            b2 = slim.conv2d(b2, 256, [1, 7], scope="Conv2d_0e_1x7")
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(x, [3, 3], scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 128, [1, 1], scope="Conv2d_0b_1x1")
        return tf.concat([b0, b1, b2, b3], axis=3)


def _reduction_b(slim, tf, x, scope):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 192, [1, 1], scope="Conv2d_0a_1x1")
            b0 = slim.conv2d(b0, 192, [3, 3], stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 256, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 256, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 320, [7, 1], scope="Conv2d_0c_7x1")
            b1 = slim.conv2d(b1, 320, [3, 3], stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.max_pool2d(x, [3, 3], stride=2, padding="VALID", scope="MaxPool_1a_3x3")
        return tf.concat([b0, b1, b2], axis=3)


def _block_c(slim, tf, x, scope):
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(x, 256, [1, 1], scope="Conv2d_0a_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(x, 384, [1, 1], scope="Conv2d_0a_1x1")
            b1 = tf.concat([slim.conv2d(b1, 256, [1, 3], scope="Conv2d_0b_1x3"),
                            slim.conv2d(b1, 256, [3, 1], scope="Conv2d_0c_3x1")], axis=3)
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(x, 384, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 448, [3, 1], scope="Conv2d_0b_3x1")
            b2 = slim.conv2d(b2, 512, [1, 3], scope="Conv2d_0c_1x3")
            b2 = tf.concat([slim.conv2d(b2, 256, [1, 3], scope="Conv2d_0d_1x3"),
                            slim.conv2d(b2, 256, [3, 1], scope="Conv2d_0e_3x1")], axis=3)
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(x, [3, 3], scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 256, [1, 1], scope="Conv2d_0b_1x1")
        return tf.concat([b0, b1, b2, b3], axis=3)


def inception_v4(inputs, num_classes: int = NUM_CLASSES, is_training: bool = False,
                 create_aux_logits: bool = True, scope: str = SCOPE):
    """(logits (N, num_classes), end_points) for NHWC `inputs` scaled to [-1, 1]; build it
    inside `slim_scopes.inception_scope()`. The final pooling averages the whole map at any
    input size."""
    import tensorflow as tf

    from caffezoo.frameworks import import_tf_slim

    slim = import_tf_slim()
    ends = {}
    with tf.compat.v1.variable_scope(scope), \
            slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training), \
            slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d], stride=1,
                           padding="SAME"):
        x = slim.conv2d(inputs, 32, [3, 3], stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        x = slim.conv2d(x, 32, [3, 3], padding="VALID", scope="Conv2d_2a_3x3")
        x = slim.conv2d(x, 64, [3, 3], scope="Conv2d_2b_3x3")
        with tf.compat.v1.variable_scope("Mixed_3a"):
            with tf.compat.v1.variable_scope("Branch_0"):
                b0 = slim.max_pool2d(x, [3, 3], stride=2, padding="VALID",
                                     scope="MaxPool_0a_3x3")
            with tf.compat.v1.variable_scope("Branch_1"):
                b1 = slim.conv2d(x, 96, [3, 3], stride=2, padding="VALID",
                                 scope="Conv2d_0a_3x3")
            x = tf.concat([b0, b1], axis=3)
        with tf.compat.v1.variable_scope("Mixed_4a"):
            with tf.compat.v1.variable_scope("Branch_0"):
                b0 = slim.conv2d(x, 64, [1, 1], scope="Conv2d_0a_1x1")
                b0 = slim.conv2d(b0, 96, [3, 3], padding="VALID", scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_1"):
                b1 = slim.conv2d(x, 64, [1, 1], scope="Conv2d_0a_1x1")
                b1 = slim.conv2d(b1, 64, [1, 7], scope="Conv2d_0b_1x7")
                b1 = slim.conv2d(b1, 64, [7, 1], scope="Conv2d_0c_7x1")
                b1 = slim.conv2d(b1, 96, [3, 3], padding="VALID", scope="Conv2d_1a_3x3")
            x = tf.concat([b0, b1], axis=3)
        with tf.compat.v1.variable_scope("Mixed_5a"):
            with tf.compat.v1.variable_scope("Branch_0"):
                b0 = slim.conv2d(x, 192, [3, 3], stride=2, padding="VALID",
                                 scope="Conv2d_1a_3x3")
            with tf.compat.v1.variable_scope("Branch_1"):
                b1 = slim.max_pool2d(x, [3, 3], stride=2, padding="VALID",
                                     scope="MaxPool_1a_3x3")
            x = tf.concat([b0, b1], axis=3)
        for letter in "bcde":
            x = _block_a(slim, tf, x, f"Mixed_5{letter}")
        x = _reduction_a(slim, tf, x, "Mixed_6a")
        for letter in "bcdefgh":
            x = _block_b(slim, tf, x, f"Mixed_6{letter}")
        ends["Mixed_6h"] = x
        x = _reduction_b(slim, tf, x, "Mixed_7a")
        for letter in "bcd":
            x = _block_c(slim, tf, x, f"Mixed_7{letter}")
        ends["Mixed_7d"] = x
        if create_aux_logits:
            with tf.compat.v1.variable_scope("AuxLogits"):
                aux = slim.avg_pool2d(ends["Mixed_6h"], [5, 5], stride=3, padding="VALID",
                                      scope="AvgPool_1a_5x5")
                aux = slim.conv2d(aux, 128, [1, 1], scope="Conv2d_1b_1x1")
                aux = slim.conv2d(aux, 768, aux.get_shape()[1:3], padding="VALID",
                                  scope="Conv2d_2a")
                aux = slim.flatten(aux)
                ends["AuxLogits"] = slim.fully_connected(aux, num_classes, activation_fn=None,
                                                         scope="Aux_logits")
        with tf.compat.v1.variable_scope("Logits"):
            x = slim.avg_pool2d(x, x.get_shape()[1:3], padding="VALID", scope="AvgPool_1a")
            x = slim.dropout(x, 0.8, scope="Dropout_1b")
            x = slim.flatten(x, scope="PreLogitsFlatten")
            logits = slim.fully_connected(x, num_classes, activation_fn=None, scope="Logits")
            ends["Logits"] = logits
    return logits, ends
