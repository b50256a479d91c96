"""A layer seen as the linear map the one-shot papers prune: W (out, in).

SparseGPT and Wanda are written for `y = W x` with W of shape (out, in): a
row per output unit, a column per input feature, and the layer's inputs as
(tokens, in). Keras stores a `Dense` kernel as (in, out) and an
`EinsumDense` kernel with any number of input and output axes (a query
projection (hidden, heads, head_dim), an attention output (heads, head_dim,
hidden)). `LinearView` maps between the two: the kernel's contracted axes,
in their kernel order, flatten into the columns (so the last contracted
axis, the one `NM` and `Block` group along, varies fastest) and its other
axes into the rows; the inputs are moved and flattened the same way.
"""

import math

from keras import layers as keras_layers
from keras import ops


class LinearView:
    """The (out, in) matrix view of a `Dense` or `EinsumDense` kernel.

    Args:
        layer: the (unwrapped) `Dense` or `EinsumDense` layer, built.
        where: how to name the layer in errors (its path in the model).

    Attributes:
        shape: the kernel's shape.
        rows: output features (product of the kernel's output axes).
        cols: input features (product of the contracted axes).
        input_axis: the kernel's last contracted axis (the library's input
            axis for this kernel).
    """

    def __init__(self, layer, where):
        self.where = where
        kernel = layer.kernel
        self.shape = tuple(int(d) for d in kernel.shape)
        if isinstance(layer, keras_layers.EinsumDense):
            self._init_einsum(layer.equation)
        elif isinstance(layer, keras_layers.Dense):
            self._input_axes, self._output_axes = (0,), (1,)
            self._input_perm, self._input_rank = None, None
        else:
            raise ValueError(
                f"One-shot pruning with calibration data handles Dense and "
                f"EinsumDense layers; {where} is a {type(layer).__name__}. "
                "Prune it with method='magnitude', or leave it out with "
                "`layers=`."
            )
        self.rows = math.prod(self.shape[a] for a in self._output_axes)
        self.cols = math.prod(self.shape[a] for a in self._input_axes)
        self.input_axis = self._input_axes[-1]
        self._kernel_perm = self._output_axes + self._input_axes

    def _init_einsum(self, equation):
        spec = equation.replace(" ", "")
        inputs, output = spec.split("->")
        source, kernel = inputs.split(",")
        if "..." in kernel or ("..." in source and not source.startswith("...")):
            raise ValueError(
                f"One-shot pruning cannot read EinsumDense {self.where} with "
                f"equation '{equation}' as a linear map (ellipsis in the kernel "
                "or not leading the input)."
            )
        letters = source.replace("...", "")
        contracted = [c for c in kernel if c in letters and c not in output]
        shared = [c for c in kernel if c in letters and c in output]
        summed_away = [c for c in letters if c not in kernel and c not in output]
        if shared or summed_away or not contracted:
            raise ValueError(
                f"One-shot pruning handles EinsumDense equations of the form "
                f"'tokens x inputs, inputs x outputs -> tokens x outputs'; "
                f"{self.where} has '{equation}', which is not one linear map "
                "over its inputs (axes shared by input, kernel and output, or "
                "summed away). Leave it out with `layers=` or use "
                "method='magnitude'."
            )
        self._input_axes = tuple(kernel.index(c) for c in contracted)
        self._output_axes = tuple(i for i, c in enumerate(kernel) if c not in contracted)
        # Input axes (after any leading ellipsis): tokens first, then the
        # contracted ones in the kernel's order.
        token_positions = [i for i, c in enumerate(letters) if c not in contracted]
        contracted_positions = [letters.index(c) for c in contracted]
        self._input_rank = len(letters)
        self._input_perm = token_positions + contracted_positions

    def matrix(self, kernel):
        """The float32 (rows, cols) matrix of a kernel-shaped tensor."""
        moved = ops.transpose(ops.cast(kernel, "float32"), self._kernel_perm)
        return ops.reshape(moved, (self.rows, self.cols))

    def kernel(self, matrix):
        """The kernel-shaped tensor of a (rows, cols) matrix (inverse of
        `matrix`)."""
        moved_shape = tuple(self.shape[a] for a in self._kernel_perm)
        moved = ops.reshape(matrix, moved_shape)
        inverse = [0] * len(self._kernel_perm)
        for position, axis in enumerate(self._kernel_perm):
            inverse[axis] = position
        return ops.transpose(moved, inverse)

    def input_rows(self, inputs):
        """The layer inputs as float32 (tokens, cols)."""
        x = ops.cast(inputs, "float32")
        if self._input_perm is not None:
            leading = len(x.shape) - self._input_rank
            perm = list(range(leading)) + [leading + p for p in self._input_perm]
            x = ops.transpose(x, perm)
        return ops.reshape(x, (-1, self.cols))
