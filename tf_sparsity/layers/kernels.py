"""Which layers can be made sparse, and where their kernels live.

One table of `KernelSpec`s says, for every supported layer type, which
attribute holds each sparsifiable kernel and which axis of it the layer's
call sums over. Dense, EinsumDense, the convolutions and Embedding keep the
variable in a private attribute (`_kernel`, `_embeddings`) behind a
read-only property that every `call()` reads; the transpose, depthwise and
separable convolutions keep it in a plain attribute. Either way the sparse
wrapper rebinds that attribute to the sparse kernel for the duration of one
call (`SparseWrapper.call_with_kernels`).
"""

import dataclasses
import difflib

import keras


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """Where one sparsifiable kernel of a layer type lives.

    Attributes:
        layer_type: the `keras.layers.Layer` subclass (subclasses of it are
            covered too).
        attribute: the attribute of the layer holding the kernel variable
            (`"_kernel"` for Dense, `"kernel"` for the transpose
            convolutions).
        input_axis: the kernel axis the layer's call sums over (what blocks
            and N:M group along): an int, None (an Embedding's rows are
            looked up, not summed), or a function `layer -> int or None`
            where it depends on the layer (EinsumDense's equation).
    """

    layer_type: type
    attribute: str
    input_axis: object = None

    @property
    def name(self):
        """The public name (`_kernel` -> `kernel`), used in summaries,
        mask files and variable names."""
        return self.attribute.lstrip("_")

    def resolve_input_axis(self, layer):
        """The non-negative input axis of this kernel of `layer`, or None."""
        axis = self.input_axis(layer) if callable(self.input_axis) else self.input_axis
        if axis is None:
            return None
        return axis % len(getattr(layer, self.attribute).shape)


def _einsum_input_axis(layer):
    """The last kernel axis EinsumDense's equation contracts with its input."""
    inputs, output = layer.equation.replace(" ", "").split("->")
    source, kernel = inputs.split(",")
    contracted = [i for i, c in enumerate(kernel) if c in source and c not in output]
    return contracted[-1] if contracted else None


# Ordered from most to least specific: the first matching type wins.
# Transposed convolutions store (..., out, in).
_BUILT_IN = (
    KernelSpec(keras.layers.SeparableConv1D, "depthwise_kernel", -2),
    KernelSpec(keras.layers.SeparableConv1D, "pointwise_kernel", -2),
    KernelSpec(keras.layers.SeparableConv2D, "depthwise_kernel", -2),
    KernelSpec(keras.layers.SeparableConv2D, "pointwise_kernel", -2),
    KernelSpec(keras.layers.DepthwiseConv1D, "kernel", -2),
    KernelSpec(keras.layers.DepthwiseConv2D, "kernel", -2),
    KernelSpec(keras.layers.Conv1DTranspose, "kernel", -1),
    KernelSpec(keras.layers.Conv2DTranspose, "kernel", -1),
    KernelSpec(keras.layers.Conv3DTranspose, "kernel", -1),
    KernelSpec(keras.layers.Conv1D, "_kernel", -2),
    KernelSpec(keras.layers.Conv2D, "_kernel", -2),
    KernelSpec(keras.layers.Conv3D, "_kernel", -2),
    KernelSpec(keras.layers.EinsumDense, "_kernel", _einsum_input_axis),
    KernelSpec(keras.layers.Dense, "_kernel", 0),
    KernelSpec(keras.layers.Embedding, "_embeddings", None),
)

# Specs of types registered by users, most recent first; checked before the
# built-in ones.
_registered = []


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
    for name in kernel_attributes:
        # Kernels are instance attributes made in `build`, so only names the
        # class itself defines as something else can be refused here; the
        # rest are checked on each layer when a model is sparsified.
        defined = getattr(layer_class, name, None)
        if callable(defined) and not isinstance(defined, property):
            raise ValueError(
                f"register_sparsifiable({layer_class.__name__}): '{name}' is a "
                "method of the class, not an attribute holding a kernel "
                "variable."
            )
    input_axes = dict(input_axes or {})
    unknown = sorted(set(input_axes) - set(kernel_attributes))
    if unknown or not all(isinstance(a, int) for a in input_axes.values()):
        raise ValueError(
            f"register_sparsifiable({layer_class.__name__}): `input_axes` must "
            f"map kernel attributes {kernel_attributes} to ints, got {input_axes!r}."
        )
    specs = [
        KernelSpec(layer_class, attribute, input_axes.get(attribute))
        for attribute in kernel_attributes
    ]
    _registered[:] = specs + [s for s in _registered if s.layer_type is not layer_class]


def all_specs():
    """Every `KernelSpec`, registered ones first (the lookup order)."""
    return (*_registered, *_BUILT_IN)


def kernel_specs(layer):
    """The `KernelSpec`s of `layer`'s sparsifiable kernels, in order.

    Returns:
        A tuple of specs, or None if the layer type is unsupported.
    """
    for spec in all_specs():
        if isinstance(layer, spec.layer_type):
            return tuple(s for s in all_specs() if s.layer_type is spec.layer_type)
    return None


def is_supported(layer):
    return kernel_specs(layer) is not None


def supported_types():
    types = []
    for spec in all_specs():
        if spec.layer_type not in types:
            types.append(spec.layer_type)
    return tuple(types)


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
    return kernel_attribute_problem(layer)


def kernel_attribute_problem(layer):
    """Why a built, supported `layer` has no kernel variable where its
    `KernelSpec`s say (a misspelt or non-weight attribute given to
    `register_sparsifiable`), or None."""
    for spec in kernel_specs(layer):
        value = getattr(layer, spec.attribute, None)
        if isinstance(value, keras.Variable):
            continue
        where = f"layer '{layer.name}' ({type(layer).__name__})"
        weights = [
            name for name, held in vars(layer).items() if isinstance(held, keras.Variable)
        ]
        close = difflib.get_close_matches(spec.attribute, weights, n=1)
        hint = (f"Did you mean '{close[0]}'? " if close else "") + (
            f"Its attributes holding weights: {', '.join(map(repr, weights))}"
            if weights
            else "It has no attribute holding a weight variable"
        )
        if value is None:
            found = f"has no attribute '{spec.attribute}'"
        else:
            found = (
                f"has '{spec.attribute}' = {value!r} ({type(value).__name__}), "
                "not a weight variable"
            )
        return (
            f"{where} {found} (registered as a kernel with "
            f"`tfs.register_sparsifiable`). {hint}"
        )
    return None
