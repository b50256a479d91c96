"""Sparsity structures: which groups of weights are pruned together.

A structure is its own axis, independent of the method: any pruning method
takes `structure=` (`tfs.MagnitudePruning(schedule, structure=tfs.Block((1,
4)))`), and the method's per-weight scores decide which units go.

Every structure sees a kernel as a matrix: its input (contraction) axis is
moved last and becomes the columns, every other axis is flattened into the
rows. For a `Dense` kernel of shape (in, out) the matrix is (out, in), the
layout LiteRT's `FULLY_CONNECTED` uses, so `Block((1, 4))` groups 4
consecutive input elements of one output unit: the block its sparse kernel
runs fast. For a `Conv2D` kernel (kh, kw, in, out) the rows are the
(kh, kw, out) positions and the columns the input channels.

- `Unstructured()`: every weight is its own unit (the default).
- `Block((rows, cols))`: blocks of rows x cols; a block's score is the mean
  of its weights' scores (for magnitude pruning, its mean |w|), as in
  jaxpruner. Counts are in blocks; a partial block at the matrix edge is a
  unit of its own (scored by the mean over the weights it has).
- `NM(n, m)`: keep the n highest-scoring of every m consecutive weights
  along the input axis (NVIDIA's 2:4 is `NM(2, 4)`). This fixes each kernel
  at sparsity 1 - n/m. Before a gradual schedule reaches it, the weights
  pruned are the lowest-scoring among each group's m - n lowest, so no group
  ever loses more than m - n.
- `Units()`: whole output units (Dense neurons, convolution filters,
  keras-hub feed-forward units), with every weight coupled to them in other
  layers (`tf_sparsity/dependency.py`); `Heads()`: whole attention heads.
  Their masks remove units that `tfs.shrink` then cuts out of the model.
"""

import math

import keras
import numpy as np
from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity import masks as mask_ops
from tf_sparsity._config import ConfigObject

PACKAGE = "tf_sparsity"

# Scores of weights an N:M group must keep: above every real score.
_KEEP_SCORE = float(np.finfo("float32").max)


def matrix_shape(shape, input_axis):
    """(rows, cols) of the matrix view of a kernel of `shape`."""
    shape = tuple(int(d) for d in shape)
    cols = shape[input_axis]
    return math.prod(shape) // max(cols, 1), cols


def _to_matrix(x, input_axis):
    moved = ops.moveaxis(x, input_axis, -1)
    return ops.reshape(moved, (-1, moved.shape[-1]))


def _from_matrix(matrix, shape, input_axis):
    shape = tuple(int(d) for d in shape)
    moved_shape = shape[:input_axis % len(shape)] + shape[input_axis % len(shape) + 1 :]
    moved = ops.reshape(matrix, moved_shape + (shape[input_axis],))
    return ops.moveaxis(moved, -1, input_axis)


class Structure(ConfigObject):
    """Base of sparsity structures (see the module docstring).

    A structure turns per-weight scores into per-unit scores
    (`unit_scores`), counts its units (`num_units`), and turns a 0/1 mask
    over units back into a mask over weights (`expand`). All three work on
    static shapes, so the mask update compiles with XLA.
    """

    #: The sparsity every kernel has, when the structure fixes it (N:M).
    fixed_sparsity = None

    #: Whether `scope="global"` (one ranking over all kernels) makes sense.
    supports_global_scope = True

    #: What one prunable unit is called in messages.
    unit_name = "weight"

    #: The `dependency.analyze` kind whose groups this structure prunes
    #: (units coupled across layers), or None for per-kernel structures.
    coupled_kind = None

    #: Whether scores need the loss's gradient (see `MaskedMethod`).
    needs_gradient = False

    @property
    def needs_input_axis(self):
        """Whether units are defined along a kernel's input axis."""
        return True

    def check(self, where, shape, input_axis, target_sparsity):
        """Raises ValueError when this structure cannot prune the kernel.

        Args:
            where: the layer and kernel, for the message (e.g.
                "layer 'dense' (kernel)").
            shape: the kernel's shape.
            input_axis: its input axis, or None if it has none.
            target_sparsity: the sparsity asked of this kernel, or None.
        """
        if self.needs_input_axis and input_axis is None:
            raise ValueError(
                f"{self!r} groups weights along a kernel's input (contraction) "
                f"axis, and {where} has none (an Embedding's rows are looked "
                "up, not summed over); leave it out of `sparsify(..., layers=...)` "
                "or keep it dense with `distribution=tfs.Uniform(dense=[...])`"
            )
        if not target_sparsity:
            return
        # Counts are whole units: a kernel of few units cannot come near its
        # target, and pruning every unit would silently cut the layer off.
        units = self.num_units(shape, input_axis)
        pruned = mask_ops.num_to_prune(target_sparsity, units)
        if units == 1:
            problem = (
                f"is a single {self.unit_name} of {self!r}, so it can only be "
                "kept or pruned whole, not pruned to its target sparsity "
                f"{target_sparsity:g}"
            )
        elif pruned >= units:
            problem = (
                f"has only {units} {self.unit_name}s of {self!r}, so its "
                f"target sparsity {target_sparsity:g} would prune every one of them"
            )
        else:
            return
        raise ValueError(
            f"{where} (kernel shape {tuple(int(d) for d in shape)}) {problem}; "
            "use a smaller structure or a lower target, leave it out of "
            "`sparsify(..., layers=...)`, or keep it dense with "
            "`distribution=tfs.Uniform(dense=[...])`"
        )

    def num_units(self, shape, input_axis):
        """The number of prunable units of a kernel of `shape`."""
        return math.prod(int(d) for d in shape)

    def unit_scores(self, scores, input_axis):
        """Scores of the units (any shape), from per-weight `scores`."""
        return scores

    def expand(self, unit_mask, shape, input_axis):
        """The per-weight mask (`shape`) of a 0/1 mask over the units."""
        return unit_mask

    def active_units(self, mask, input_axis):
        """A float32 0/1 mask over the units: those whose weights are live."""
        means = self.unit_scores(ops.cast(mask, "float32"), input_axis)
        return ops.cast(ops.greater(means, 0.5), "float32")

    def count_active(self, mask, input_axis):
        """The number of live units of a kernel's `mask` (a Python int; the
        count a drop-and-grow update moves a fraction of)."""
        return int(ops.convert_to_numpy(ops.sum(self.active_units(mask, input_axis))))

    def move(self, mask, drop_scores, grow_scores, num_moved, input_axis):
        """Drop-and-grow on one kernel (dynamic sparse training).

        Drops the `num_moved` live units of lowest `drop_scores` and grows
        as many dead ones of highest `grow_scores` (per-weight scores are
        turned into unit scores as for pruning). Pure; compiled with XLA.

        Returns:
            `(new_mask, kept)`: float32 per-weight 0/1 tensors; `kept` marks
            the weights that were live and not dropped.
        """
        new_units, kept_units = mask_ops.drop_and_grow(
            self.active_units(mask, input_axis),
            self.unit_scores(drop_scores, input_axis),
            self.unit_scores(grow_scores, input_axis),
            num_moved,
        )
        shape = mask.shape
        return (
            self.expand(new_units, shape, input_axis),
            self.expand(kept_units, shape, input_axis),
        )

    def move_jointly(self, masks, drop_scores, grow_scores, num_moved, input_axes):
        """`move` with one ranking over several kernels (global scope):
        `num_moved` units in all, wherever the scores say."""
        units = [
            (
                self.active_units(m, axis),
                self.unit_scores(d, axis),
                self.unit_scores(g, axis),
            )
            for m, d, g, axis in zip(masks, drop_scores, grow_scores, input_axes)
        ]
        flat = [
            ops.concatenate([ops.reshape(ops.cast(u[i], "float32"), (-1,)) for u in units])
            for i in range(3)
        ]
        new_flat, kept_flat = mask_ops.drop_and_grow(*flat, num_moved)
        results, start = [], 0
        for (active, _, _), mask, axis in zip(units, masks, input_axes):
            size = math.prod(active.shape)
            pieces = [
                ops.reshape(flat_mask[start : start + size], active.shape)
                for flat_mask in (new_flat, kept_flat)
            ]
            results.append(tuple(self.expand(p, mask.shape, axis) for p in pieces))
            start += size
        return results

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Unstructured(Structure):
    """Each weight is pruned on its own (the default)."""

    @property
    def needs_input_axis(self):
        return False


@keras.saving.register_keras_serializable(package=PACKAGE)
class Block(Structure):
    """Prunes whole blocks of `rows` x `cols` weights of the matrix view.

    Args:
        shape: `(rows, cols)`: rows along the output units (all axes but the
            input axis, flattened), cols along the input axis. `(1, 4)` is
            LiteRT's fast float block; `(1, 16)` its int8 one.
    """

    unit_name = "block"

    def __init__(self, shape=(1, 4)):
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 2
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape)
            or min(shape) < 1
        ):
            raise ValueError(
                f"Block: `shape` must be two positive ints (rows, cols), got {shape!r}."
            )
        self.shape = (int(shape[0]), int(shape[1]))

    def _grid(self, shape, input_axis):
        rows, cols = matrix_shape(shape, input_axis)
        block_rows, block_cols = self.shape
        return rows, cols, -(-rows // block_rows), -(-cols // block_cols)

    def num_units(self, shape, input_axis):
        _, _, grid_rows, grid_cols = self._grid(shape, input_axis)
        return grid_rows * grid_cols

    def unit_scores(self, scores, input_axis):
        rows, cols, grid_rows, grid_cols = self._grid(scores.shape, input_axis)
        block_rows, block_cols = self.shape
        pad = ((0, grid_rows * block_rows - rows), (0, grid_cols * block_cols - cols))
        matrix = ops.pad(_to_matrix(ops.cast(scores, "float32"), input_axis), pad)
        blocks = ops.reshape(matrix, (grid_rows, block_rows, grid_cols, block_cols))
        sums = ops.sum(blocks, axis=(1, 3))
        # Weights per block (fewer in partial edge blocks), known statically.
        sizes = np.pad(np.ones((rows, cols), "float32"), pad).reshape(
            grid_rows, block_rows, grid_cols, block_cols
        ).sum(axis=(1, 3))
        return sums / ops.convert_to_tensor(sizes)

    def expand(self, unit_mask, shape, input_axis):
        rows, cols, _, _ = self._grid(shape, input_axis)
        block_rows, block_cols = self.shape
        matrix = ops.repeat(ops.repeat(unit_mask, block_rows, axis=0), block_cols, axis=1)
        return _from_matrix(matrix[:rows, :cols], shape, input_axis)

    def get_config(self):
        return {"shape": list(self.shape)}

    def __repr__(self):
        return f"Block({self.shape!r})"


@keras.saving.register_keras_serializable(package=PACKAGE)
class NM(Structure):
    """N:M sparsity: keep the `n` highest-scoring of every `m` consecutive
    weights along the input axis (2:4 runs on NVIDIA's sparse tensor cores).

    Each kernel ends at sparsity 1 - n/m, so the method's schedule must end
    there (`final_sparsity=1 - n/m`) and the distribution must be uniform.
    The input dimension must be a multiple of `m`.

    Args:
        n: weights kept per group.
        m: group size.
    """

    supports_global_scope = False

    def __init__(self, n=2, m=4):
        self.m = validate.integer("NM", "m", m, minimum=2)
        self.n = validate.integer("NM", "n", n, minimum=1)
        if self.n >= self.m:
            raise ValueError(f"NM: `n` must be less than `m`, got n={n}, m={m}.")

    @property
    def fixed_sparsity(self):
        return 1.0 - self.n / self.m

    def check(self, where, shape, input_axis, target_sparsity):
        super().check(where, shape, input_axis, target_sparsity)
        cols = int(shape[input_axis])
        if cols % self.m:
            raise ValueError(
                f"{self!r} needs the input dimension of {where} to be a "
                f"multiple of {self.m}, got {cols} (kernel shape "
                f"{tuple(shape)}); leave it out of `sparsify(..., layers=...)` or "
                "keep it dense with `distribution=tfs.Uniform(dense=[...])`"
            )
        if target_sparsity and abs(target_sparsity - self.fixed_sparsity) > 1e-6:
            raise ValueError(
                f"{self!r} fixes every kernel at sparsity {self.fixed_sparsity:g}, "
                f"but {where} is asked for {target_sparsity:g}; use "
                "tfs.Uniform() and a schedule ending at "
                f"final_sparsity={self.fixed_sparsity:g}"
            )

    def unit_scores(self, scores, input_axis):
        shape = scores.shape
        matrix = _to_matrix(ops.cast(scores, "float32"), input_axis)
        groups = ops.reshape(matrix, (matrix.shape[0], -1, self.m))
        rank = self._rank_in_groups(groups)
        prunable = ops.less(rank, self.m - self.n)
        masked = ops.where(prunable, groups, _KEEP_SCORE)
        return _from_matrix(ops.reshape(masked, matrix.shape), shape, input_axis)

    def count_active(self, mask, input_axis):
        return int(ops.convert_to_numpy(ops.sum(ops.cast(ops.greater(mask, 0.5), "int32"))))

    def move(self, mask, drop_scores, grow_scores, num_moved, input_axis):
        """Drop-and-grow that keeps `n` live weights in every group of `m`:
        the `num_moved` live weights of lowest `drop_scores` in the kernel
        are dropped, then each group grows back as many as it lost, its
        dead weights of highest `grow_scores` (just-dropped ones included)."""
        shape = mask.shape
        kept = mask_ops.drop_lowest(mask, drop_scores, num_moved)
        kept_groups = self._groups(ops.cast(kept, "float32"), input_axis)
        lost = self.n - ops.sum(kept_groups, axis=-1, keepdims=True)
        dead = ops.less(kept_groups, 0.5)
        keys = ops.where(
            dead, self._groups(ops.cast(grow_scores, "float32"), input_axis), -mask_ops.OUTSIDE
        )
        # Highest key first: the rank of the negated keys.
        rank = self._rank_in_groups(-keys)
        grown = ops.logical_and(dead, ops.less(ops.cast(rank, "float32"), lost))
        new = ops.cast(ops.logical_or(ops.greater(kept_groups, 0.5), grown), "float32")
        rows = math.prod(int(d) for d in shape) // int(shape[input_axis])
        new = _from_matrix(ops.reshape(new, (rows, -1)), shape, input_axis)
        return new, ops.cast(kept, "float32")

    def _rank_in_groups(self, groups):
        """Rank of each entry within its group of `m` (last axis), lowest
        first, ties broken by position: an int32 tensor shaped like it."""
        left, right = groups[..., :, None], groups[..., None, :]
        earlier = np.tril(np.ones((self.m, self.m), bool), -1)  # [i, j]: j < i
        lower = ops.logical_or(
            ops.less(right, left), ops.logical_and(ops.equal(right, left), earlier)
        )
        return ops.sum(ops.cast(lower, "int32"), axis=-1)

    def _groups(self, x, input_axis):
        matrix = _to_matrix(x, input_axis)
        return ops.reshape(matrix, (matrix.shape[0], -1, self.m))

    def get_config(self):
        return {"n": self.n, "m": self.m}

    def __repr__(self):
        return f"NM({self.n}, {self.m})"


UNIT_SCORES = ("l2", "l1", "taylor")


class CoupledStructure(Structure):
    """Base of structures whose units span several layers (`Units`,
    `Heads`): a unit is scored over all the weights removed with it, in
    every layer of its dependency group, and one 0/1 choice per unit is
    expanded into each of those layers' masks (`methods.updates.UnitMaskUpdate`).

    Args:
        score: how a unit is scored from its weights' scores `s` (for
            magnitude pruning `s = |w|`; random pruning draws them):
            "l2" (default): the root mean square of `s` over the unit's
            weights, the filter norm of Li et al. (2017) and Torch-Pruning's
            default, averaged so that units of different sizes compare
            under `scope="global"`; "l1": the mean of `s`; "taylor": the
            mean of `s * |dL/dw|`, the first-order Taylor estimate of the
            loss change when the unit is removed (Molchanov et al., 2019),
            from the gradient the method records at every training step (the
            step before the update). An update before any training step has
            no gradient and raises: start the schedule at step 1 or later.
    """

    supports_global_scope = True

    def __init__(self, score="l2"):
        self.score = validate.choice(type(self).__name__, "score", score, UNIT_SCORES)

    @property
    def needs_input_axis(self):
        return False

    @property
    def needs_gradient(self):
        return self.score == "taylor"

    def check(self, where, shape, input_axis, target_sparsity):
        # Units span layers: `sparsify` checks each dependency group.
        return

    def weight_scores(self, scores, gradient):
        """Per-weight terms whose mean over a unit's weights ranks it."""
        if self.score == "taylor":
            return ops.abs(scores * gradient)
        if self.score == "l2":
            return ops.square(scores)
        return scores

    def get_config(self):
        return {"score": self.score}

    def __repr__(self):
        score = "" if self.score == "l2" else f"score={self.score!r}"
        return f"{type(self).__name__}({score})"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Units(CoupledStructure):
    """Prunes whole output units: Dense/EinsumDense neurons, convolution
    filters, the intermediate units of keras-hub feed-forward networks.

    A unit goes with everything that carries its channel: the next layers'
    input rows, BatchNormalization parameters, depthwise filters, and every
    member of a residual `Add` (scored together); see
    `tf_sparsity/dependency.py`. Counts and targets are in units of each
    dependency group. `tfs.shrink(model)` then builds the smaller model.

    Units that flow into a `LayerNormalization` are kept whole: it
    normalizes over the channels, so removing one would change the mean and
    variance of the others (in Transformers the residual stream stays; the
    feed-forward units and heads are what can go).
    """

    unit_name = "unit"
    coupled_kind = "units"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Heads(CoupledStructure):
    """Prunes whole attention heads of `MultiHeadAttention` layers (and
    keras-hub's, which subclass it): a head's query, key and value
    projections and its rows of the output projection go together.
    `tfs.shrink(model)` then builds the model with fewer heads.

    keras-hub's `TransformerEncoder` and `TransformerDecoder` blocks cannot
    lose heads: they derive each head's size from `hidden_dim // num_heads`,
    so fewer heads in their config would change every head's size;
    `sparsify` refuses them naming `num_heads` (their feed-forward units
    can be pruned with `tfs.Units()`)."""

    unit_name = "head"
    coupled_kind = "heads"


def parse(text):
    """A structure from its command-line spelling.

    `"unstructured"`, `"units"`, `"heads"`, `"RxC"` (a block, e.g.
    `"1x4"`) or `"N:M"` (e.g. `"2:4"`).
    """
    spelled = str(text).strip().lower()
    try:
        if spelled == "unstructured":
            return Unstructured()
        if spelled == "units":
            return Units()
        if spelled == "heads":
            return Heads()
        if "x" in spelled:
            rows, cols = spelled.split("x")
            return Block((int(rows), int(cols)))
        if ":" in spelled:
            n, m = spelled.split(":")
            return NM(int(n), int(m))
    except (ValueError, TypeError) as error:
        raise ValueError(f"Bad structure {text!r}: {error}") from None
    raise ValueError(
        f"Bad structure {text!r}: expected 'unstructured', 'units', 'heads', a block 'RxC' "
        "(e.g. 1x4) or 'N:M' (e.g. 2:4)."
    )


def get(identifier):
    """A `Structure` from an instance, a serialized config or None."""
    if identifier is None:
        return Unstructured()
    if isinstance(identifier, Structure):
        return identifier
    if isinstance(identifier, dict):
        structure = keras.saving.deserialize_keras_object(identifier)
        if isinstance(structure, Structure):
            return structure
    raise TypeError(
        "`structure` must be tfs.Unstructured(), tfs.Block((rows, cols)), "
        f"tfs.NM(n, m), tfs.Units() or tfs.Heads(), got {identifier!r}."
    )
