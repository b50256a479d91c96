"""The Keras layer wrapper that gives a layer sparse kernels."""

import contextlib

import keras
from keras import ops

from tf_sparsity import methods as methods_lib
from tf_sparsity.layers import kernels as kernels_lib
from tf_sparsity.layers.sparse_kernel import SparseKernel


@keras.saving.register_keras_serializable(package="tf_sparsity")
class SparseWrapper(keras.layers.Wrapper):
    """Wraps a layer so that its kernels are sparse.

    The wrapped layer's own `call` runs unchanged: for the duration of each
    call the wrapper rebinds the layer's kernel attributes to the sparse
    kernels its method computes (`kernel * mask` for pruning methods), so
    gradients flow through the sparse kernel and any supported layer type
    works without re-implementing its forward pass. Biases and all other
    weights stay dense.

    Supported layers: `Dense`, `EinsumDense`, `Conv1D/2D/3D`,
    `Conv1D/2D/3DTranspose`, `DepthwiseConv1D/2D`, `SeparableConv1D/2D`
    (both kernels) and `Embedding`.

    Args:
        layer: the layer to wrap (built or not).
        method: a `SparsityMethod`, e.g. `tfs.MagnitudePruning(schedule)`.
        target_sparsity: this layer's final sparsity; the schedule's value
            is scaled by `target_sparsity / schedule.final_sparsity` at every
            step. Defaults to the method's final sparsity.
        **kwargs: base `Layer` arguments; the name and dtype policy default
            to the wrapped layer's.

    Input shape and output shape: those of the wrapped layer.
    """


    # Set by `observe_inputs` while calibration data runs through the model
    # (one-shot pruning reads each layer's inputs); None otherwise.
    _input_observer = None

    def __init__(self, layer, method, target_sparsity=None, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"SparseWrapper expects a Keras layer, got {layer!r}."
            )
        if isinstance(layer, SparseWrapper):
            raise ValueError(
                f"Layer '{layer.name}' is already sparse (a SparseWrapper)."
            )
        specs = kernels_lib.kernel_specs(layer)
        reason = kernels_lib.unsupported_reason(layer)
        if reason is not None and (specs is None or layer.built):
            raise ValueError(f"Cannot make layer sparse: {reason}.")
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        # Sparse kernels are computed from the variables' own values
        # (float32 under a mixed policy) and cast to the wrapped layer's
        # compute dtype only as the layer would cast its variables
        # (`call_with_kernels`), so that training, inference and `strip`
        # see the same kernel values.
        self.autocast = False
        self.method = methods_lib.get(method)
        method_reason = self.method.unsupported_reason(layer)
        if method_reason is not None:
            raise ValueError(
                f"Cannot make layer '{layer.name}' ({type(layer).__name__}) "
                f"sparse with {type(self.method).__name__}: {method_reason}."
            )
        if target_sparsity is None:
            target_sparsity = self.method.final_sparsity
        if target_sparsity is not None and not 0.0 <= target_sparsity < 1.0:
            raise ValueError(
                f"Layer '{layer.name}': target_sparsity must be in [0, 1), "
                f"got {target_sparsity!r}."
            )
        self.target_sparsity = target_sparsity
        self.kernel_specs = specs
        self.kernels = ()
        self.supports_masking = getattr(layer, "supports_masking", False)
        # Set by SparsityCallback / update_masks: see `call`.
        self._step_updates_attached = False
        #: Set by the updater while masked weights are held at zero in the
        #: variables, so training computes with the variables as they are
        #: (see `MaskedMethod.keep_masked_zeros`).
        self.masked_zeros_kept = False
        if layer.built:
            self.build(_built_input_shape(layer))

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernels = []
        for spec in self.kernel_specs:
            kernel = SparseKernel(self, spec)
            kernel.state = self.method.build(kernel)
            kernels.append(kernel)
        #: One `SparseKernel` per sparse weight, in the layer type's order.
        self.kernels = tuple(kernels)
        self.built = True

    def add_seed_generator(self, seed, name=None):
        """A `keras.random.SeedGenerator` tracked by this layer, like a
        variable made with `add_weight` (for a method's per-kernel noise)."""
        generator = keras.random.SeedGenerator(seed, name=name)
        self._tracker.track(generator)
        return generator

    def __getattr__(self, name):
        # Only reached when normal lookup fails. Composite layers read
        # attributes of their sublayers (keras-hub's TokenAndPositionEmbedding
        # reads `token_embedding.tie_weights` in `get_config`), so the wrapper
        # answers for its wrapped layer.
        inner = self.__dict__.get("layer")
        if inner is None or name.startswith("__"):
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            )
        return getattr(inner, name)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        # A plain layer loading this entry (a sparse model restored from a
        # config that rebuilds plain layers) then sees one entry too many
        # and fails, instead of taking a mask for its kernel.
        store[_SENTINEL] = ops.zeros(())

    def load_own_variables(self, store):
        entries = {key: store[key] for key in store.keys() if key != _SENTINEL}
        super().load_own_variables(entries)

    def call(self, inputs, training=None, **kwargs):
        if (
            training
            and self.method.requires_step_updates
            and not self._step_updates_attached
        ):
            raise RuntimeError(
                f"Sparse layer '{self.name}' is being trained, but nothing "
                f"drives its {type(self.method).__name__} schedule (mask "
                f"updates or regularizer ramp), so it would not become "
                f"sparse as asked. {self.method.missing_driver_advice}"
            )
        if self._input_observer is not None:
            self._input_observer(inputs)
        return self.method.call(self, inputs, training=training, **kwargs)

    @contextlib.contextmanager
    def observe_inputs(self, observer):
        """Calls `observer(inputs)` on every call of this layer inside the
        `with` block (eager calls: the observer sees concrete tensors)."""
        object.__setattr__(self, "_input_observer", observer)
        try:
            yield
        finally:
            object.__setattr__(self, "_input_observer", None)

    def call_with_kernels(
        self, inputs, kernels, training=None, linear=False, **kwargs
    ):
        """Calls the wrapped layer with its kernels temporarily replaced.

        This is the one place where a layer's (Keras-private) kernel
        attributes are swapped: each is rebound to its tensor with
        `object.__setattr__` (bypassing Keras's tracking: no new weight)
        and restored afterwards.

        Args:
            inputs: the layer inputs.
            kernels: dict mapping `SparseKernel`s of this wrapper to the
                tensors to compute with.
            training: forwarded when the wrapped layer's call accepts it.
            linear: "bias" skips the bias and the activation, "activation"
                skips only the activation (what local reparameterization
                needs); False runs the layer as is.
            **kwargs: forwarded to the wrapped layer.
        """
        if getattr(self.layer, "_call_has_training_arg", False):
            kwargs["training"] = training
        replaced = {
            kernel.spec.attribute: self._as_layer_would_read(value)
            for kernel, value in kernels.items()
        }
        if linear:
            replaced["activation"] = None
        if linear == "bias":
            replaced.update(bias=None, use_bias=False)
        replaced = {
            name: value for name, value in replaced.items() if hasattr(self.layer, name)
        }
        originals = {name: getattr(self.layer, name) for name in replaced}
        try:
            for name, value in replaced.items():
                object.__setattr__(self.layer, name, value)
            return self.layer(inputs, **kwargs)
        finally:
            for name, value in originals.items():
                object.__setattr__(self.layer, name, value)

    def _as_layer_would_read(self, value):
        """`value` cast like the wrapped layer casts its float variables
        when it runs (to its compute dtype under a mixed policy)."""
        layer = self.layer
        dtype = layer.compute_dtype
        if (
            getattr(layer, "autocast", True)
            and keras.backend.is_float_dtype(dtype)
            and keras.backend.is_float_dtype(value.dtype)
            and keras.backend.standardize_dtype(value.dtype) != dtype
        ):
            return ops.cast(value, dtype)
        return value

    def inference_kernels(self):
        """`{public name: tensor}` of the sparse kernels inference uses (what
        `strip` folds in), e.g. `{"kernel": ...}`."""
        return {kernel.name: kernel.inference_value() for kernel in self.kernels}

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        config = super().get_config()
        config["method"] = keras.saving.serialize_keras_object(self.method)
        config["target_sparsity"] = self.target_sparsity
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        method = keras.saving.deserialize_keras_object(
            config.pop("method"), custom_objects=custom_objects
        )
        return cls(layer, method, **config)


_SENTINEL = "tf_sparsity_wrapper"


def _built_input_shape(layer):
    config = layer.get_build_config() or {}
    return config.get("input_shape")
