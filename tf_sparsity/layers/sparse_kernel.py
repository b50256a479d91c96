"""`SparseKernel`: one sparse weight of a wrapped layer, and what the library
knows about it."""

import math
import zlib


class SparseKernel:
    """One sparse weight of a `SparseWrapper`.

    Methods build their per-kernel state on it, the mask updater, mask files,
    summaries and `strip` iterate `wrapper.kernels` and read its typed
    fields. Created by the wrapper when it is built.

    Args:
        wrapper: the `SparseWrapper` that owns the kernel.
        spec: its `KernelSpec` (layer type, attribute, input axis).

    Attributes:
        wrapper: the owning `SparseWrapper`.
        spec: the `KernelSpec`.
        name: the public name ("kernel", "embeddings", "depthwise_kernel").
        input_axis: the axis the layer's call sums over (what blocks and
            N:M group along), non-negative, or None.
        state: the method's per-kernel state (a dataclass the method
            defines, e.g. `MaskState` with the mask variable), set when the
            wrapper is built.
        layer_path: the slash-joined path of the wrapper in its model (set
            when the model is walked, see `tfs.sparse_kernels`); the
            wrapper's name until then.
    """

    def __init__(self, wrapper, spec):
        self.wrapper = wrapper
        self.spec = spec
        self.name = spec.name
        self.input_axis = spec.resolve_input_axis(wrapper.layer)
        self.state = None
        self.layer_path = wrapper.name

    @property
    def layer(self):
        """The wrapped layer."""
        return self.wrapper.layer

    @property
    def variable(self):
        """The dense kernel variable of the wrapped layer."""
        return getattr(self.wrapper.layer, self.spec.attribute)

    @property
    def shape(self):
        return tuple(int(d) for d in self.variable.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def target(self):
        """This kernel's final sparsity, or None (learned sparsity)."""
        return self.wrapper.target_sparsity

    @property
    def method(self):
        return self.wrapper.method

    @property
    def path(self):
        """`layer_path/name`: the key of mask files and summaries."""
        return f"{self.layer_path}/{self.name}"

    @property
    def seed(self):
        """A stable non-negative int from the kernel's place in the model,
        for methods that draw per-kernel randomness (same on every replica
        and after a resume)."""
        return zlib.crc32(f"{self.layer_path}/{self.spec.attribute}".encode()) & 0x7FFFFFFF

    def add_weight(self, suffix, **kwargs):
        """Creates a variable of the method's state on the wrapper, named
        `{name}_{suffix}` (e.g. `kernel_mask`)."""
        return self.wrapper.add_weight(name=f"{self.name}_{suffix}", **kwargs)

    def add_seed_generator(self, seed, suffix="seed_generator"):
        """A `keras.random.SeedGenerator` tracked by the wrapper (so its
        state advances inside compiled and stateless training steps)."""
        return self.wrapper.add_seed_generator(seed, name=f"{self.name}_{suffix}")

    def inference_value(self):
        """The sparse kernel inference uses (what `strip` folds in)."""
        return self.wrapper.method.inference_kernel(self)

    def training_value(self):
        """The kernel the forward pass uses in training."""
        return self.wrapper.method.training_kernel(self)

    def __repr__(self):
        return f"SparseKernel('{self.path}', shape={self.shape})"
