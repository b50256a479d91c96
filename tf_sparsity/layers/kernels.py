"""Which layers can be made sparse, and where their kernels live.

Dense, EinsumDense, the convolutions and Embedding keep their kernel in a
private variable (`_kernel`, `_embeddings`) behind a read-only property that
every `call()` reads; the transpose, depthwise and separable convolutions keep
it in a plain attribute. Either way the sparse wrapper rebinds that attribute
to `kernel * mask` for the duration of one call.
"""

import keras

# Ordered from most to least specific: the first matching class wins.
_SUPPORTED = (
    (keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")),
    (keras.layers.DepthwiseConv1D, ("kernel",)),
    (keras.layers.DepthwiseConv2D, ("kernel",)),
    (keras.layers.Conv1DTranspose, ("kernel",)),
    (keras.layers.Conv2DTranspose, ("kernel",)),
    (keras.layers.Conv3DTranspose, ("kernel",)),
    (keras.layers.Conv1D, ("_kernel",)),
    (keras.layers.Conv2D, ("_kernel",)),
    (keras.layers.Conv3D, ("_kernel",)),
    (keras.layers.EinsumDense, ("_kernel",)),
    (keras.layers.Dense, ("_kernel",)),
    (keras.layers.Embedding, ("_embeddings",)),
)


def kernel_attributes(layer):
    """Names of the attributes holding `layer`'s sparsifiable kernels.

    Returns:
        A tuple of attribute names, or None if the layer type is unsupported.
    """
    for layer_type, attributes in _SUPPORTED:
        if isinstance(layer, layer_type):
            return attributes
    return None


def is_supported(layer):
    return kernel_attributes(layer) is not None


def supported_types():
    return tuple(layer_type for layer_type, _ in _SUPPORTED)


def public_name(attribute):
    """`_kernel` -> `kernel`: the name users see in summaries and paths."""
    return attribute.lstrip("_")


def unsupported_reason(layer):
    """Why `layer` cannot be wrapped, or None if it can."""
    if not is_supported(layer):
        names = ", ".join(t.__name__ for t in supported_types())
        return (
            f"layer '{layer.name}' ({type(layer).__name__}) has no kernel "
            f"that tf_sparsity can make sparse; supported types: {names}"
        )
    if getattr(layer, "quantization_mode", None):
        return (
            f"layer '{layer.name}' is quantized "
            f"({layer.quantization_mode}); sparsify before quantizing"
        )
    if getattr(layer, "lora_enabled", False):
        return (
            f"layer '{layer.name}' has LoRA enabled; merge or disable LoRA "
            "before sparsifying"
        )
    if not layer.built:
        return (
            f"layer '{layer.name}' is not built, so its kernel shape is "
            "unknown; build the model first (call `model.build(input_shape)` "
            "or run it on a batch)"
        )
    return None
