"""ResNet-50 v1.5 as trained in the paper's reference code.

The architecture and initialization follow `state_of_sparsity/sparse_rn50/
resnet_model.py` of google-research/google-research (itself the Cloud TPU
ResNet): post-activation bottleneck blocks with the stride on the 3x3
convolution (v1.5), explicit ("fixed") padding before strided convolutions,
batch normalization with momentum 0.9 and epsilon 1e-5, the last batch
normalization of every residual branch starting with gamma = 0, and a
fully-connected classifier initialized from N(0, 0.01).

Every convolution and the classifier are ordinary Keras layers, so
`tfs.sparsify` can wrap any of them; `sparsity_distribution` says which the
paper kept dense or gave their own target.
"""

import keras
from keras import layers

import tf_sparsity as tfs

#: Blocks per stage of ResNet-50.
RESNET50_BLOCKS = (3, 4, 6, 3)
#: Name of the first convolution (the stem), which some runs keep dense.
FIRST_CONV_NAME = "conv1"
#: Name of the classifier.
CLASSIFIER_NAME = "fc"

BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def conv_initializer():
    # TF1's `variance_scaling_initializer()` defaults, which the reference
    # code used: scale 1, fan-in, truncated normal.
    return keras.initializers.VarianceScaling(
        scale=1.0, mode="fan_in", distribution="truncated_normal"
    )


def l2_regularizer(weight_decay):
    """Keras's L2 penalty equal to the reference's `l2_regularizer(wd)`.

    tf.contrib's `l2_regularizer(wd)` adds `wd * sum(w**2) / 2`; Keras's
    `L2(l2)` adds `l2 * sum(w**2)`, hence the factor 1/2.
    """
    if not weight_decay:
        return None
    return keras.regularizers.L2(weight_decay / 2.0)


def conv_bn(x, filters, kernel_size, strides, name, weight_decay, relu=True,
            zero_gamma=False):
    """Convolution, batch normalization and optional ReLU.

    Strided convolutions pad explicitly by `kernel_size - 1` (split as the
    reference does) and use "valid" padding, so the output size depends only
    on the kernel size, not on the input size's parity.

    Args:
        x: input tensor, shape `(batch, height, width, channels)`.
        filters: output channels.
        kernel_size: square kernel size.
        strides: stride in both spatial dimensions.
        name: the convolution's name; the normalization is `name + "_bn"`.
        weight_decay: L2 weight decay on the kernel (reference convention).
        relu: apply a ReLU after the normalization.
        zero_gamma: start the normalization's scale at 0 (last layer of a
            residual branch, so every block starts as the identity).

    Returns:
        Tensor of shape `(batch, height // strides, width // strides,
        filters)`.
    """
    if strides > 1:
        pad_total = kernel_size - 1
        pad_begin = pad_total // 2
        padding = (pad_begin, pad_total - pad_begin)
        if pad_total:
            x = layers.ZeroPadding2D((padding, padding), name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if strides > 1 else "same",
        use_bias=False,
        kernel_initializer=conv_initializer(),
        kernel_regularizer=l2_regularizer(weight_decay),
        name=name,
    )(x)
    x = layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=f"{name}_bn",
    )(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def bottleneck_block(x, filters, strides, name, weight_decay, projection):
    """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand, plus the shortcut.

    Args:
        x: input tensor `(batch, height, width, channels)`.
        filters: channels of the 1x1 and 3x3 convolutions; the block
            outputs `4 * filters`.
        strides: stride of the 3x3 convolution and of the projection.
        name: prefix of the block's layer names.
        weight_decay: L2 weight decay on the kernels.
        projection: use a 1x1 projection shortcut (first block of a stage).

    Returns:
        Tensor `(batch, height // strides, width // strides, 4 * filters)`.
    """
    shortcut = x
    if projection:
        shortcut = conv_bn(
            x, 4 * filters, 1, strides, f"{name}_projection", weight_decay,
            relu=False,
        )
    y = conv_bn(x, filters, 1, 1, f"{name}_conv1", weight_decay)
    y = conv_bn(y, filters, 3, strides, f"{name}_conv2", weight_decay)
    y = conv_bn(
        y, 4 * filters, 1, 1, f"{name}_conv3", weight_decay, relu=False,
        zero_gamma=True,
    )
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet50(
    num_classes=1000,
    image_size=224,
    blocks=RESNET50_BLOCKS,
    base_width=64,
    weight_decay=1e-4,
    name="resnet50",
):
    """ResNet-50 v1.5 (or a slimmer variant for tests), as a functional model.

    Inputs are images normalized by the ImageNet mean and standard deviation
    (see `data.normalize`); outputs are float32 logits, also under a mixed
    precision policy.

    Args:
        num_classes: classifier outputs.
        image_size: input height and width.
        blocks: bottleneck blocks per stage; `(1, 1, 1, 1)` makes a tiny
            network for smoke tests.
        base_width: channels of the stem and of the first stage's
            bottleneck (64 in ResNet-50; each stage doubles it).
        weight_decay: L2 weight decay on convolution and classifier kernels,
            in the reference code's convention (`wd * sum(w**2) / 2`).
        name: the model's name.

    Returns:
        An uncompiled `keras.Model`, input shape `(batch, image_size,
        image_size, 3)`, output shape `(batch, num_classes)`.
    """
    if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
        raise ValueError(
            f"blocks must be four positive block counts, got {tuple(blocks)!r}"
        )
    if base_width < 1:
        raise ValueError(f"base_width must be positive, got {base_width}")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = conv_bn(inputs, base_width, 7, 2, FIRST_CONV_NAME, weight_decay)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    for stage, num_blocks in enumerate(blocks):
        filters = base_width * 2**stage
        for block in range(num_blocks):
            x = bottleneck_block(
                x,
                filters,
                strides=2 if (stage > 0 and block == 0) else 1,
                name=f"stage{stage + 1}_block{block + 1}",
                weight_decay=weight_decay,
                projection=block == 0,
            )
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        kernel_regularizer=l2_regularizer(weight_decay),
        name=CLASSIFIER_NAME,
    )(x)
    # Logits in float32 whatever the compute dtype: the softmax and the loss
    # are not safe in float16.
    outputs = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def sparsity_distribution(dense_first_conv=False, last_layer_sparsity=None):
    """Which layers the paper kept dense or gave their own sparsity.

    The released ResNet-50 runs pruned every convolution and the classifier
    at the same sparsity (the reference's `prune_first_layer` and
    `prune_last_layer` default to True); its "extended" magnitude runs kept
    the first convolution dense. `last_layer_sparsity` maps to the
    reference's `last_layer_sparsity` flag.

    Args:
        dense_first_conv: keep the stem convolution dense.
        last_layer_sparsity: the classifier's own final sparsity, or None
            for the model-wide target.

    Returns:
        A `tfs.Uniform` distribution.
    """
    dense = [FIRST_CONV_NAME] if dense_first_conv else []
    targets = {}
    if last_layer_sparsity is not None:
        targets[CLASSIFIER_NAME] = float(last_layer_sparsity)
    return tfs.Uniform(dense=dense, targets=targets)
