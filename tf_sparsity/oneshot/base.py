"""The base of one-shot (post-training) pruning methods.

A one-shot method prunes a trained layer once, from its weights and,
optionally, statistics of the layer's inputs over a calibration set: no
training, no schedule. `tfs.prune_oneshot` drives it: it collects each
layer's statistics block by block (`calibration.py`), then asks the method
for the pruned kernel and its mask. A method is one file that subclasses
`OneShotMethod`; its registry line is in `oneshot/__init__.py`.
"""

import math

from keras import ops

from tf_sparsity import _backend
from tf_sparsity import _validation as validate
from tf_sparsity import masks as mask_ops
from tf_sparsity import structures as structures_lib


class InputStatistics:
    """Running statistics of one layer's inputs over calibration batches.

    Args:
        view: the layer's `LinearView` (how its inputs become (tokens, in)).
        second_moment: accumulate X^T X (cols x cols, what SparseGPT needs)
            as well as the per-feature sums of squares (what Wanda needs).

    Attributes:
        num_samples: calibration sequences (rows of the batches) seen; the
            reference implementations average over these, not over tokens.
        squared_norms: float32 (cols,) tensor: sum over tokens of x_j^2.
        gram: float32 (cols, cols) tensor sum over tokens of x x^T, or None.
    """

    def __init__(self, view, second_moment=False):
        self.view = view
        self.num_samples = 0
        self.squared_norms = ops.zeros((view.cols,), "float32")
        self.gram = ops.zeros((view.cols, view.cols), "float32") if second_moment else None

    def update(self, inputs):
        """Adds one batch of layer inputs (a batch of sequences: the leading
        axis counts samples, as in the reference code)."""
        shape = ops.shape(inputs)
        self.num_samples += int(shape[0]) if len(shape) > 2 else 1
        rows = self.view.input_rows(inputs)
        if self.gram is None:
            self.squared_norms = _accumulate_norms(self.squared_norms, rows)
        else:
            self.squared_norms, self.gram = _accumulate_gram(
                self.squared_norms, self.gram, rows
            )


@_backend.jit_compile
def _accumulate_norms(squared_norms, rows):
    return squared_norms + ops.sum(ops.square(rows), axis=0)


@_backend.jit_compile
def _accumulate_gram(squared_norms, gram, rows):
    return (
        squared_norms + ops.sum(ops.square(rows), axis=0),
        gram + ops.matmul(ops.transpose(rows), rows),
    )


_COMPILED = {}


class OneShotMethod:
    """Base of one-shot pruning methods (see the module docstring).

    Subclasses set `name`, `needs_calibration` and `second_moment`, and
    implement `prune_matrix`.

    Args:
        sparsity: the fraction of each layer's weights to remove, in [0, 1).
        structure: `tfs.Unstructured()` (default), `tfs.NM(n, m)` or
            `tfs.Block((rows, cols))`; N:M fixes the sparsity at 1 - n/m.
    """

    name = None
    #: Whether the method reads calibration inputs at all.
    needs_calibration = True
    #: Whether it needs X^T X (else only per-feature input norms).
    second_moment = False

    def __init__(self, sparsity=0.5, structure=None):
        structure = structures_lib.get(structure)
        sparsity = validate.sparsity("prune_oneshot", "sparsity", sparsity)
        fixed = structure.fixed_sparsity
        if fixed is not None and abs(fixed - sparsity) > 1e-6:
            raise ValueError(
                f"prune_oneshot: {structure!r} keeps {structure.n} of every "
                f"{structure.m} weights, which is sparsity {fixed:g}, but "
                f"`sparsity={sparsity:g}` was asked. Pass sparsity={fixed:g}."
            )
        self.sparsity = sparsity
        self.structure = structure

    def check_layer(self, where, view):
        """Raises ValueError when the method cannot prune this layer."""
        self.structure.check(where, view.shape, view.input_axis, self.sparsity)

    def compiled(self, function, *shapes):
        """`function` compiled with XLA, once per backend, method settings
        and input shapes, shared by every instance (a model's layers repeat
        a few shapes)."""
        key = (_backend.backend_name(), repr(self), function.__name__, shapes)
        if key not in _COMPILED:
            _COMPILED[key] = _backend.jit_compile(function, static_shapes=True)
        return _COMPILED[key]

    def prune_matrix(self, matrix, statistics):
        """Prunes one layer.

        Args:
            matrix: float32 (rows, cols) tensor: the layer's W (out, in).
            statistics: its `InputStatistics`, or None when
                `needs_calibration` is False.

        Returns:
            `(new_matrix, keep)`: float32 (rows, cols) tensors; `keep` is the
            0/1 mask and `new_matrix` is zero wherever `keep` is.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(sparsity={self.sparsity:g}, structure={self.structure!r})"


def keep_lowest_pruned(scores, sparsity, structure, input_axis=1):
    """The 0/1 keep-mask that removes the lowest-scoring units of
    `structure` across the whole score tensor (exactly round(sparsity x
    units); N:M: exactly m - n per group). Ties are broken by position.

    Args:
        scores: float tensor shaped like the kernel (or its (rows, cols)
            matrix view, with `input_axis=1`).
        sparsity: the fraction of units to remove.
        structure: a `tfs.Structure`.
        input_axis: the axis units group along, or None (unstructured
            only).
    """
    units = structure.unit_scores(scores, input_axis)
    num_units = math.prod(int(d) for d in units.shape)
    count = mask_ops.num_to_prune(sparsity, num_units)
    keep = mask_ops.prune_lowest(units, count)
    return structure.expand(keep, tuple(scores.shape), input_axis)


def keep_lowest_pruned_per_row(scores, sparsity):
    """The 0/1 keep-mask removing the round(sparsity x cols) lowest scores
    of every row (ties: the earlier column is pruned first, as a stable
    sort does)."""
    rows, cols = (int(d) for d in scores.shape)
    count = mask_ops.num_to_prune(sparsity, cols)
    if count == 0:
        return ops.ones((rows, cols), "float32")
    # top_k returns equal values in index order, so the negated scores'
    # top k are the k lowest, earliest first.
    _, columns = ops.top_k(-ops.cast(scores, "float32"), count)
    row_ids = ops.repeat(ops.arange(rows, dtype="int32")[:, None], count, axis=1)
    indices = ops.stack([ops.reshape(row_ids, (-1,)), ops.reshape(ops.cast(columns, "int32"), (-1,))], axis=1)
    pruned = ops.scatter(indices, ops.ones((rows * count,), "float32"), (rows, cols))
    return 1.0 - pruned
