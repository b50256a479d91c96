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


# Types registered by users; checked before the built-in table.
_REGISTERED = []


def register_sparsifiable(layer_class, kernel_attributes, input_axes=None):
    """Makes a layer type of your own sparsifiable.

    The wrapper computes with sparse kernels by rebinding the named
    attributes of the layer to `kernel * mask` for the duration of each
    call, so the layer's `call` must read its kernels through those
    attributes (e.g. `self.kernel`), and each must hold a variable created
    in `build`.

    Args:
        layer_class: a `keras.layers.Layer` subclass (subclasses of it are
            covered too).
        kernel_attributes: name or names of the attributes holding the
            kernels to make sparse (biases and scales are better left out).
        input_axes: optional dict `{attribute: axis}`: the axis each kernel's
            call sums over, needed only for structured sparsity
            (`tfs.Block`, `tfs.NM`).

    Example:

    ```python
    tfs.register_sparsifiable(MyProjection, ["kernel"])
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule))
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "register_sparsifiable expects a keras.layers.Layer subclass, got "
            f"{layer_class!r}."
        )
    if isinstance(kernel_attributes, str):
        kernel_attributes = (kernel_attributes,)
    kernel_attributes = tuple(kernel_attributes)
    if not kernel_attributes or not all(
        isinstance(name, str) and name for name in kernel_attributes
    ):
        raise ValueError(
            f"register_sparsifiable({layer_class.__name__}): "
            "`kernel_attributes` must be one or more attribute names, got "
            f"{kernel_attributes!r}."
        )
    input_axes = dict(input_axes or {})
    unknown = sorted(set(input_axes) - set(kernel_attributes))
    if unknown or not all(isinstance(a, int) for a in input_axes.values()):
        raise ValueError(
            f"register_sparsifiable({layer_class.__name__}): `input_axes` must "
            f"map kernel attributes {kernel_attributes} to ints, got {input_axes!r}."
        )
    _REGISTERED[:] = [e for e in _REGISTERED if e[0] is not layer_class]
    _REGISTERED.insert(0, (layer_class, kernel_attributes))
    _REGISTERED_INPUT_AXES[layer_class] = input_axes


def kernel_attributes(layer):
    """Names of the attributes holding `layer`'s sparsifiable kernels.

    Returns:
        A tuple of attribute names, or None if the layer type is unsupported.
    """
    for layer_type, attributes in (*_REGISTERED, *_SUPPORTED):
        if isinstance(layer, layer_type):
            return attributes
    return None


# The input (contraction) axis of each built-in kernel: what structures
# (blocks, N:M) group along. Transposed convolutions store (..., out, in).
_INPUT_AXES = (
    (keras.layers.Conv1DTranspose, -1),
    (keras.layers.Conv2DTranspose, -1),
    (keras.layers.Conv3DTranspose, -1),
    (keras.layers.DepthwiseConv1D, -2),
    (keras.layers.DepthwiseConv2D, -2),
    (keras.layers.SeparableConv1D, -2),
    (keras.layers.SeparableConv2D, -2),
    (keras.layers.Conv1D, -2),
    (keras.layers.Conv2D, -2),
    (keras.layers.Conv3D, -2),
    (keras.layers.Dense, 0),
)
_REGISTERED_INPUT_AXES = {}


def input_axis(layer, attribute):
    """The axis of `layer`'s kernel `attribute` that its call sums over.

    Dense: 0; convolutions: their input-channel axis; EinsumDense: the last
    kernel axis its equation contracts; Embedding: None (rows are looked up,
    not summed). For registered types, what `register_sparsifiable` was told.

    Returns:
        A non-negative axis of the kernel, or None.
    """
    ndim = len(getattr(layer, attribute).shape)
    for layer_type, _ in _REGISTERED:
        if isinstance(layer, layer_type) and attribute in _REGISTERED_INPUT_AXES[layer_type]:
            return _REGISTERED_INPUT_AXES[layer_type][attribute] % ndim
    if isinstance(layer, keras.layers.EinsumDense):
        axis = _einsum_input_axis(layer.equation)
    else:
        axis = next((a for t, a in _INPUT_AXES if isinstance(layer, t)), None)
    return None if axis is None else axis % ndim


def _einsum_input_axis(equation):
    inputs, output = equation.replace(" ", "").split("->")
    source, kernel = inputs.split(",")
    contracted = [i for i, c in enumerate(kernel) if c in source and c not in output]
    return contracted[-1] if contracted else None


def is_supported(layer):
    return kernel_attributes(layer) is not None


def supported_types():
    return tuple(layer_type for layer_type, _ in (*_REGISTERED, *_SUPPORTED))


def public_name(attribute):
    """`_kernel` -> `kernel`: the name users see in summaries and paths."""
    return attribute.lstrip("_")


def supported_type_names():
    return ", ".join(t.__name__ for t in supported_types())


def unsupported_reason(layer):
    """Why `layer` cannot be wrapped, or None if it can."""
    if not is_supported(layer):
        return (
            f"layer '{layer.name}' ({type(layer).__name__}) has no kernel "
            "that tf_sparsity can make sparse (register its kernel "
            "attributes with `tfs.register_sparsifiable`); supported types: "
            f"{supported_type_names()}"
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
    missing = [a for a in kernel_attributes(layer) if getattr(layer, a, None) is None]
    if missing:
        return (
            f"layer '{layer.name}' ({type(layer).__name__}) has no attribute "
            f"{', '.join(map(repr, missing))} holding a kernel (see "
            "`tfs.register_sparsifiable`)"
        )
    return None
