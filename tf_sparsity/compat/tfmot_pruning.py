"""tfmot's `prune_low_magnitude`, `strip_pruning`, `prune_scope`,
`PrunableLayer` and pruning policies, on tf_sparsity's classes.

A pruned layer is a `tfs.SparseWrapper` whose method is
`TfmotMagnitudePruning`, a `tfs.MagnitudePruning` that keeps tfmot's
behaviour where it differs from the paper's: pruned weights keep training
and compete again at every mask update (regrowth), they are ranked by what
one training step made of them (tfmot zeroes them before every step), and
each update keeps `max(round(n * (1 - sparsity)), 1)` of a kernel's `n`
weights (or blocks), rounded half to even in float32 as tfmot does.
"""

import abc

import keras
import numpy as np
from keras import ops

from tf_sparsity import masks as mask_ops
from tf_sparsity import structures as structures_lib
from tf_sparsity.compat import tfmot_schedules
from tf_sparsity.layers import kernels as kernels_lib
from tf_sparsity.layers.sparse_wrapper import SparseWrapper
from tf_sparsity.methods import updates
from tf_sparsity.methods.magnitude import MagnitudePruning
from tf_sparsity.schedules import OneShot
from tf_sparsity.sparsify import is_sparse
from tf_sparsity.sparsify import sparsify
from tf_sparsity.strip import strip

try:  # Functional is not exported publicly; every Keras 3 release has it here.
    from keras.src.models.functional import Functional as _Functional
except ImportError:  # pragma: no cover
    _Functional = None

PACKAGE = tfmot_schedules.PACKAGE

# Layer types tfmot wraps without pruning anything (its registry maps them
# to no weights), by their Keras 3 names.
_NOTHING_TO_PRUNE = tuple(
    layer_type
    for layer_type in (
        getattr(keras.layers, name, None)
        for name in (
            "ELU", "LeakyReLU", "ReLU", "Softmax", "Cropping1D", "Cropping2D",
            "Cropping3D", "DepthwiseConv1D", "DepthwiseConv2D", "UpSampling1D",
            "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D",
            "ZeroPadding3D", "Activation", "ActivityRegularization", "Dropout",
            "Flatten", "Lambda", "Masking", "Permute", "RepeatVector", "Reshape",
            "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "Add",
            "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply",
            "Subtract", "AlphaDropout", "GaussianDropout", "GaussianNoise",
            "BatchNormalization", "LayerNormalization", "AveragePooling1D",
            "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
            "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
            "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPooling1D",
            "MaxPooling2D", "MaxPooling3D", "Rescaling", "InputLayer",
        )
    )
    if layer_type is not None
)

_WAYS_TO_LEAVE_A_LAYER_DENSE = (
    "leave it unpruned: prune the other layers with "
    "`keras.models.clone_model(model, clone_function=...)` calling "
    "`prune_low_magnitude` on them only, or pass a `pruning_policy`"
)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TfmotBlock(structures_lib.Block):
    """tfmot's `block_size` and `block_pooling_type` as a tf_sparsity block
    structure.

    tfmot's blocks are `(height, width)` in the weight's own layout: for a
    `Dense` kernel `(inputs, outputs)`, `height` inputs by `width` outputs.
    That is `tfs.Block((width, height))` of tf_sparsity's `(outputs,
    inputs)` view. A block's score is the mean ("AVG") or the largest
    ("MAX") magnitude of its weights. As in tfmot, only 2-D weights can be
    pruned in blocks. An input or output dimension that is not a multiple of
    the block gets partial edge blocks, each scored over the weights it has
    (tfmot's SAME-padded pooling centres its windows on the padded size, so
    its edge blocks can differ there).

    Args:
        block_size: `(height, width)`, as tfmot's `block_size`.
        pooling_type: "AVG" or "MAX", as tfmot's `block_pooling_type`.
    """

    def __init__(self, block_size=(1, 4), pooling_type="AVG"):
        height, width = _block_size(block_size)
        if pooling_type not in ("AVG", "MAX"):
            raise ValueError(
                f"Unsupported pooling type '{pooling_type}'. Should be 'AVG' or 'MAX'."
            )
        super().__init__((width, height))
        self.block_size = (height, width)
        self.pooling_type = pooling_type

    def check(self, where, shape, input_axis, target_sparsity):
        if len(shape) != 2:
            raise ValueError(
                f"block_size={self.block_size}: {where} has a weight of shape "
                f"{tuple(shape)}; tfmot's block sparsity applies to 2-D weights "
                "only. For blocks of convolution kernels use tf_sparsity directly: "
                "`tfs.sparsify(model, tfs.MagnitudePruning(schedule, "
                "structure=tfs.Block((rows, cols))))`; else "
                f"{_WAYS_TO_LEAVE_A_LAYER_DENSE}"
            )
        if input_axis != 0:
            raise ValueError(
                f"block_size={self.block_size}: {where} has a weight of shape "
                f"{tuple(shape)} whose first axis is not the one its call sums over "
                "(an Embedding's rows are looked up), and tf_sparsity's blocks are "
                "laid along that axis, so they cannot be tfmot's blocks here; "
                f"{_WAYS_TO_LEAVE_A_LAYER_DENSE}"
            )
        super().check(where, shape, input_axis, target_sparsity)

    def unit_scores(self, scores, input_axis):
        if self.pooling_type == "AVG":
            return super().unit_scores(scores, input_axis)
        rows, cols = structures_lib.matrix_shape(scores.shape, input_axis)
        block_rows, block_cols = self.shape
        grid_rows, grid_cols = -(-rows // block_rows), -(-cols // block_cols)
        matrix = ops.reshape(
            ops.moveaxis(ops.cast(scores, "float32"), input_axis, -1), (rows, cols)
        )
        # Padding never wins a maximum, so edge blocks score their own weights.
        padded = ops.pad(
            matrix,
            ((0, grid_rows * block_rows - rows), (0, grid_cols * block_cols - cols)),
            constant_values=-mask_ops.OUTSIDE,
        )
        blocks = ops.reshape(padded, (grid_rows, block_rows, grid_cols, block_cols))
        return ops.max(blocks, axis=(1, 3))

    def get_config(self):
        return {"block_size": list(self.block_size), "pooling_type": self.pooling_type}

    def __repr__(self):
        return f"TfmotBlock({self.block_size!r}, {self.pooling_type!r})"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TfmotNM(structures_lib.NM):
    """tfmot's `sparsity_m_by_n=(m, n)` (m zeros in every n consecutive
    weights along the input axis) as tf_sparsity's `tfs.NM(n - m, n)`.

    Args:
        m_by_n: `(m, n)`, as tfmot's `sparsity_m_by_n`.
    """

    def __init__(self, m_by_n=(2, 4)):
        zeros, group = _m_by_n(m_by_n)
        super().__init__(group - zeros, group)
        self.m_by_n = (zeros, group)

    def check(self, where, shape, input_axis, target_sparsity):
        zeros, group = self.m_by_n
        if input_axis is not None and int(shape[input_axis]) % group:
            raise ValueError(
                f"sparsity_m_by_n={self.m_by_n}: {where} has {int(shape[input_axis])} "
                f"inputs, not a multiple of {group}. tfmot pads the last group; "
                f"tf_sparsity's N:M (`tfs.NM({group - zeros}, {group})`) needs whole "
                f"groups, so {_WAYS_TO_LEAVE_A_LAYER_DENSE}"
            )
        super().check(where, shape, input_axis, target_sparsity)

    def get_config(self):
        return {"m_by_n": list(self.m_by_n)}

    def __repr__(self):
        return f"TfmotNM({self.m_by_n!r})"


def _block_size(block_size):
    try:
        height, width = (int(d) for d in block_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"block_size must be two positive ints (height, width), got {block_size!r}."
        ) from None
    if height < 1 or width < 1:
        raise ValueError(
            f"block_size must be two positive ints (height, width), got {block_size!r}."
        )
    return height, width


def _m_by_n(value):
    """tfmot's checks of `sparsity_m_by_n`, with its messages."""
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError(
            "The sparsity_m_by_n argument must be a tuple/list of 2 integers."
            f"received: {value}."
        ) from None
    if len(pair) != 2 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in pair
    ):
        raise ValueError(
            "The sparsity_m_by_n argument must be a tuple/list of 2 integers."
            f"received: {value}."
        )
    zeros, group = int(pair[0]), int(pair[1])
    if not 0 < zeros < group:
        raise ValueError(
            f"Argument m_by_n received {pair}, m be must smaller than n (and above 0)."
        )
    return zeros, group


class TfmotMaskUpdate(updates.MaskUpdate):
    """`MaskUpdate` with tfmot's counts, and its zeroing of pruned weights.

    tfmot sets pruned weights to zero before every training step, so at an
    update they hold what one step made of them. Here pruned weights keep
    training (`regrowth=True`) and are zeroed on the step before each
    update, which gives the update the same values to rank.
    """

    def num_pruned(self, step):
        structure = self.method.structure
        if isinstance(structure, structures_lib.NM):
            return super().num_pruned(step)  # Every group keeps n: exact.
        kept_fraction = np.float32(1.0) - np.float32(self.method.schedule.sparsity(step))
        counts = []
        for kernel in self.kernels:
            units = structure.num_units(kernel.shape, kernel.input_axis)
            kept = max(int(np.rint(np.float32(units) * kept_fraction)), 1)
            counts.append(units - kept)
        return counts

    def due_update(self, last_checked, step):
        schedule = self.method.schedule
        due = schedule.due_update(last_checked, step)
        if due is None and step > last_checked and schedule.should_update(step + 1):
            due = step
        return due

    def update(self, step):
        schedule = self.method.schedule
        if schedule.should_update(step):
            super().update(step)
        if schedule.should_update(step + 1):
            self.zero_pruned_weights()

    def zero_pruned_weights(self):
        """Sets every pruned weight of the group's kernels to zero (tfmot's
        `weights = weights * mask`)."""
        for kernel in self.kernels:
            self.method.keep_masked_zeros(kernel)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TfmotMagnitudePruning(MagnitudePruning):
    """`tfs.MagnitudePruning` as tfmot's `prune_low_magnitude` behaves.

    Where tfmot and the paper's reference code differ, this follows tfmot:

    - regrowth: pruned weights keep receiving gradients and compete at every
      update, so a pruned weight can come back (`regrowth=True`); between
      updates they count as zero, as tfmot zeroes them before every step,
      and each update ranks them by one step of training (see
      `TfmotMaskUpdate`);
    - counts: `max(round(n * (1 - sparsity)), 1)` of `n` weights (or
      blocks) are kept, in float32 and rounded half to even, and so is
      every weight tied with the last one kept (tfmot keeps all weights at
      least as large as its threshold);
    - steps: masks change on the training steps where tfmot's schedule says
      so at pruning step `optimizer.iterations + 1`
      (`tfmot_schedules.PruningSchedule`).

    Args:
        schedule: a tfmot schedule of `tf_sparsity.compat.tfmot`
            (`ConstantSparsity`, `PolynomialDecay`, a `PruningSchedule`
            subclass), or `tfs.OneShot` for tfmot's N:M pruning, which
            prunes once, at the first training step.
        structure: None (each weight on its own), a `TfmotBlock` or a
            `TfmotNM`.
    """

    name = "tfmot_prune_low_magnitude"

    missing_driver_advice = (
        "Pass `callbacks=[tfmot.sparsity.keras.UpdatePruningStep()]` to "
        "`model.fit`, as with tfmot (`tfs.SparsityCallback()` works too); in "
        "a custom training loop, call `tfs.update_masks(model, step)` before "
        "each step."
    )

    def __init__(self, schedule, structure=None):
        super().__init__(schedule, scope="layer", regrowth=True, structure=structure)

    def new_update_group(self):
        return TfmotMaskUpdate(self)

    def compute_masks(self, kernels, masks, counts, seeds, input_axes):
        """New masks keeping, as tfmot does, every unit (weight or block)
        whose score is at least the k-th highest, k = units - count: units
        tied with that score are all kept. N:M keeps exactly n per group."""
        if isinstance(self.structure, structures_lib.NM):
            return super().compute_masks(kernels, masks, counts, seeds, input_axes)
        new_masks = []
        for index, (kernel, mask, seed, axis) in enumerate(zip(kernels, masks, seeds, input_axes)):
            weight_scores = self.drop_scores(
                ops.cast(kernel, "float32"), ops.cast(mask, "float32"), seed
            )
            scores = self.structure.unit_scores(weight_scores, axis)
            # Magnitudes are >= 0, whose float32 bit patterns order as int32s.
            keys = ops.view(ops.reshape(ops.abs(scores), (-1,)), "int32")
            threshold = mask_ops.kth_smallest_key(keys, counts[index] + 1)
            kept = ops.cast(ops.greater_equal(keys, threshold), "float32")
            kept = ops.reshape(kept, scores.shape)
            new_masks.append(ops.cast(self.structure.expand(kept, mask.shape, axis), mask.dtype))
        return new_masks

    def get_config(self):
        config = {"schedule": keras.saving.serialize_keras_object(self.schedule)}
        if not isinstance(self.structure, structures_lib.Unstructured):
            config["structure"] = keras.saving.serialize_keras_object(self.structure)
        return config


class PrunableLayer(abc.ABC):
    """A layer of yours that says which of its weights to prune, as tfmot's
    `PrunableLayer`.

    Implement `get_prunable_weights()` to return weight variables the layer
    holds in attributes its `call` reads (e.g. `[self.kernel]`). When the
    layer is pruned, those attributes are registered with
    `tfs.register_sparsifiable(type(layer), [...])`, which tf_sparsity's
    wrapper uses to compute with the pruned weights; any layer with a
    `get_prunable_weights` method works the same way.

    Example:

    ```python
    class MyDenseLayer(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]
    ```
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The weight variables to prune."""


class PruningPolicy(abc.ABC):
    """Which layers of a model `prune_low_magnitude` prunes, as tfmot's
    `PruningPolicy`.

    Implement `allow_pruning(layer)` (whether to prune `layer`) and
    `ensure_model_supports_pruning(model)` (raise ValueError for a model
    the policy does not apply to).
    """

    @abc.abstractmethod
    def allow_pruning(self, layer):
        """Whether `layer` is pruned."""

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model):
        """Raises ValueError when the policy cannot prune `model`."""


class PruneForLatencyOnXNNPack(PruningPolicy):
    """tfmot's XNNPack policy, which tf_sparsity does not provide.

    Creating it raises NotImplementedError naming what to use instead.
    """

    def __init__(self):
        raise NotImplementedError(
            "tfmot's PruneForLatencyOnXNNPack (prune only the 1x1 Conv2D layers of a "
            "MobileNet-like model, after checking that XNNPack's sparse inference "
            "can run its whole graph) is not provided by tf_sparsity.compat.tfmot. "
            "To prune only the 1x1 convolutions, pass a PruningPolicy of yours whose "
            "allow_pruning(layer) returns `isinstance(layer, keras.layers.Conv2D) "
            "and layer.kernel_size == (1, 1)` (its ensure_model_supports_pruning "
            "may do nothing), or call `tfs.sparsify(model, tfs.MagnitudePruning("
            "schedule), layers=[...those layers...])`. For real speed from sparsity "
            "in LiteRT use block sparsity, `structure=tfs.Block((1, 4))`, and "
            "`tfs.export_litert`."
        )

    def allow_pruning(self, layer):  # pragma: no cover - never constructed
        return False

    def ensure_model_supports_pruning(self, model):  # pragma: no cover
        return None


def _is_graph_model(model):
    return isinstance(model, keras.Sequential) or (
        _Functional is not None and isinstance(model, _Functional)
    )


def _check_schedule(schedule):
    if isinstance(schedule, tfmot_schedules.PruningSchedule):
        return schedule
    module = type(schedule).__module__ or ""
    if module.startswith("tensorflow_model_optimization"):
        raise TypeError(
            f"pruning_schedule is tensorflow_model_optimization's "
            f"{type(schedule).__name__}; with tf_sparsity.compat, create it from the "
            "same module as prune_low_magnitude: "
            f"`tfmot.sparsity.keras.{type(schedule).__name__}(...)` after "
            "`from tf_sparsity.compat import tfmot`."
        )
    raise TypeError(
        "pruning_schedule must be a tfmot pruning schedule "
        "(tfmot.sparsity.keras.ConstantSparsity, PolynomialDecay or a "
        f"PruningSchedule subclass), got {schedule!r}. tf_sparsity's own "
        "schedules (tfs.PolynomialDecay, ...) count steps from the optimizer's "
        "iterations and update at end_step: use them with "
        "`tfs.sparsify(model, tfs.MagnitudePruning(schedule))` and "
        "`tfs.SparsityCallback()`."
    )


def _method(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n):
    """The `TfmotMagnitudePruning` of prune_low_magnitude's arguments."""
    if block_pooling_type not in ("AVG", "MAX"):
        raise ValueError(
            f"Unsupported pooling type '{block_pooling_type}'. Should be 'AVG' or 'MAX'."
        )
    schedule = _check_schedule(pruning_schedule)
    if sparsity_m_by_n:
        # tfmot ignores the schedule here: N:M masks are set once, at the
        # first training step (pruning step 1), and never change.
        structure = TfmotNM(sparsity_m_by_n)
        zeros, group = structure.m_by_n
        return TfmotMagnitudePruning(OneShot(zeros / group, step=0), structure=structure)
    if tuple(_block_size(block_size)) != (1, 1):
        return TfmotMagnitudePruning(
            schedule, structure=TfmotBlock(block_size, block_pooling_type)
        )
    return TfmotMagnitudePruning(schedule)


def _weight_attributes(layer):
    """The attributes of `layer` holding the weights its
    `get_prunable_weights()` returns (the layer must be built)."""
    attributes = []
    for weight in layer.get_prunable_weights():
        holders = [name for name, value in vars(layer).items() if value is weight]
        holders.sort(key=lambda name: name.startswith("_"))
        if not holders:
            name = getattr(weight, "path", None) or getattr(weight, "name", repr(weight))
            raise ValueError(
                f"prune_low_magnitude: layer '{layer.name}' "
                f"({type(layer).__name__}).get_prunable_weights() returns '{name}', "
                "which no attribute of the layer holds. tf_sparsity computes with "
                "pruned weights by swapping the attribute the layer's call reads "
                "(`tfs.register_sparsifiable`), so return weights the layer keeps "
                "in its own attributes (`self.kernel`); prune a sublayer's weights "
                "by pruning that sublayer, or the whole model with `tfs.sparsify`."
            )
        attributes.append(holders[0])
    return attributes


def _register_prunable_layer(layer):
    """Registers the kernels of a `PrunableLayer` with tf_sparsity; returns
    False when it has none to prune."""
    specs = kernels_lib.kernel_specs(layer)
    registered = specs is not None and specs[0].layer_type is type(layer)
    if not layer.built:
        input_shape = getattr(layer, "_input_shape_arg", None)
        if input_shape is None:
            if registered:
                return True
            raise ValueError(
                f"prune_low_magnitude: layer '{layer.name}' ({type(layer).__name__}) "
                "implements get_prunable_weights() but is not built, so its weights do "
                "not exist yet. tf_sparsity needs to know which attributes hold them: "
                "build the layer first (`layer.build(input_shape)`, or give it "
                "`input_shape=`), or register its kernels once with "
                f"`tfs.register_sparsifiable({type(layer).__name__}, ['kernel', ...])`."
            )
        layer.build((None, *input_shape))
    attributes = _weight_attributes(layer)
    if not attributes:
        return False
    kernels_lib.register_sparsifiable(type(layer), attributes)
    return True


def _prune_layer(layer, method, **kwargs):
    """The pruned version of one layer: its `SparseWrapper`, the layer
    itself when tfmot prunes nothing in it, or an error naming what to do.

    Args:
        layer: the layer.
        method: the `TfmotMagnitudePruning`.
        **kwargs: base `Layer` arguments of the wrapper.
    """
    if is_sparse(layer):
        raise ValueError(
            f"prune_low_magnitude: layer '{layer.name}' is already pruned (a "
            "tfs.SparseWrapper); `strip_pruning` the model first to prune it again."
        )
    if hasattr(layer, "get_prunable_weights"):
        if not _register_prunable_layer(layer):
            return layer
        return SparseWrapper(layer, method, **kwargs)
    if isinstance(layer, _NOTHING_TO_PRUNE):
        return layer
    if isinstance(layer, keras.layers.RNN):
        raise ValueError(
            f"prune_low_magnitude: layer '{layer.name}' ({type(layer).__name__}) is "
            "recurrent. tfmot prunes the kernels of LSTM, GRU and SimpleRNN cells; "
            "tf_sparsity cannot make recurrent kernels sparse, so "
            f"{_WAYS_TO_LEAVE_A_LAYER_DENSE}."
        )
    if kernels_lib.is_supported(layer):
        return SparseWrapper(layer, method, **kwargs)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        if not layer.built:
            raise ValueError(
                f"prune_low_magnitude: MultiHeadAttention layer '{layer.name}' is not "
                "built, so its projections do not exist yet. Prune it once it is "
                "built (call it on inputs first), or prune the whole model."
            )
        # tf_sparsity wraps its query, key, value and output projections.
        return sparsify(layer, method)
    if layer.built and not layer.weights:
        return layer
    raise ValueError(
        f"prune_low_magnitude: layer '{layer.name}' ({type(layer).__name__}) cannot be "
        "pruned: it is not a layer type tfmot or tf_sparsity prunes, and it has no "
        "get_prunable_weights() (tfmot.sparsity.keras.PrunableLayer). Implement "
        "get_prunable_weights(), register its kernels with "
        f"`tfs.register_sparsifiable({type(layer).__name__}, ['kernel', ...])`, or "
        f"{_WAYS_TO_LEAVE_A_LAYER_DENSE}."
    )


def _prune_model(model, method, pruning_policy):
    if pruning_policy is not None:
        pruning_policy.ensure_model_supports_pruning(model)

    def prune(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # An operation of a functional graph (`x[:, 0]`).
        if isinstance(layer, keras.Model):  # Graph models are cloned recursively.
            raise ValueError(_subclassed_model_error(layer))
        if is_sparse(layer):
            return layer
        if pruning_policy is not None and not pruning_policy.allow_pruning(layer):
            return layer
        return _prune_layer(layer, method)

    return keras.models.clone_model(model, clone_function=prune, recursive=True)


def _subclassed_model_error(model):
    return (
        f"Subclassed models are not supported currently (model '{model.name}', "
        f"{type(model).__name__}): tfmot prunes Sequential and functional models. "
        "tf_sparsity reaches the layers of any model: "
        "`tfs.sparsify(model, tfs.MagnitudePruning(schedule))` prunes it in place, "
        "trained with `tfs.SparsityCallback()`."
    )


def prune_low_magnitude(
    to_prune,
    pruning_schedule=tfmot_schedules.ConstantSparsity(0.5, 0),
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    **kwargs,
):
    """Makes a layer, a list of layers or a model prune its weights during
    training, as tfmot's `prune_low_magnitude`.

    A layer becomes a `tfs.SparseWrapper` (named as the layer) whose method
    is `TfmotMagnitudePruning`; it may be unbuilt, so it can be written
    inside a `keras.Sequential([...])` list or called on a Keras tensor. A
    Sequential or functional model is cloned with
    `keras.models.clone_model` (nested ones too), each layer wrapped: the
    clone shares the original's layers and weights, and is not compiled.
    Train with `callbacks=[tfmot.sparsity.keras.UpdatePruningStep()]`.

    Pruned, as in tfmot: the kernels of `Dense`, `Conv1D/2D/3D`,
    `Conv2D/3DTranspose`, `Embedding`, the projections of
    `MultiHeadAttention`, and the weights a layer's `get_prunable_weights()`
    returns. Not pruned: `DepthwiseConv2D` (as tfmot), `DepthwiseConv1D`,
    normalization and layers without weights. Unlike tfmot, both kernels of `SeparableConv1D/2D` are
    pruned (tfmot prunes the pointwise one), and `Conv1DTranspose` and
    `EinsumDense` are pruned (tfmot refuses them). Recurrent layers, and
    layers neither library prunes, raise a ValueError saying what to do.

    Args:
        to_prune: a layer, a list of layers, or a Sequential or functional
            model.
        pruning_schedule: a `tfmot.sparsity.keras` schedule
            (`ConstantSparsity(0.5, 0)` by default).
        block_size: `(height, width)` blocks of 2-D weights pruned together;
            `(1, 1)` prunes weights one by one.
        block_pooling_type: "AVG" or "MAX": a block's score is the mean or
            the largest magnitude of its weights.
        pruning_policy: a `PruningPolicy` choosing the layers of a model to
            prune.
        sparsity_m_by_n: `(m, n)`: m zeros in every n consecutive weights
            along the input axis (e.g. `(2, 4)`); set once, at the first
            training step, as in tfmot (the schedule is then not used).
        **kwargs: base `Layer` arguments of the wrapper, when `to_prune` is
            a layer.

    Returns:
        The pruned layer, list of layers or model.

    Raises:
        ValueError: a bad argument, a subclassed model, or a layer that
            cannot be pruned (naming what to do instead).
        TypeError: `pruning_schedule` is not a tfmot schedule of this
            module.
    """
    method = _method(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n)
    if isinstance(to_prune, list):
        pruned = []
        for layer in to_prune:
            if is_sparse(layer):
                pruned.append(layer)
            elif isinstance(layer, keras.layers.InputLayer):
                pruned.append(type(layer).from_config(layer.get_config()))
            else:
                pruned.append(_prune_layer(layer, method))
        return pruned
    if _is_graph_model(to_prune):
        return _prune_model(to_prune, method, pruning_policy)
    if isinstance(to_prune, keras.Model):
        raise ValueError(_subclassed_model_error(to_prune))
    if isinstance(to_prune, keras.layers.Layer):
        return _prune_layer(to_prune, method, **kwargs)
    raise ValueError(
        "`prune_low_magnitude` can only prune an object of the following types: "
        "keras.models.Sequential, keras functional model, keras.layers.Layer, list "
        f"of keras.layers.Layer. You passed an object of type: {type(to_prune).__name__}."
    )


def strip_pruning(model):
    """Returns the model with its pruned weights and no pruning wrappers, as
    tfmot's `strip_pruning` (`tfs.strip`).

    The result is a new, uncompiled model of the same class, its layers
    named as before pruning, each pruned kernel holding zeros where it is
    pruned; the pruned model is left as it is.

    Args:
        model: a `keras.Model` pruned with `prune_low_magnitude`.

    Raises:
        ValueError: `model` is not a `keras.Model`.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected model to be a `keras.Model` instance but got: {model!r}")
    return strip(model)


def prune_scope():
    """A scope in which models saved while pruned load, as tfmot's
    `prune_scope()`.

    Returns a `keras.saving.custom_object_scope` holding tf_sparsity's
    wrapper and this module's method, schedules and structures. Loading
    works without it too once `tf_sparsity.compat.tfmot` is imported (they
    are registered with Keras); files written by tfmot itself (tf_keras)
    do not load into Keras 3: rebuild the model in code and load its
    weights.

    Example:

    ```python
    with tfmot.sparsity.keras.prune_scope():
        loaded_model = keras.models.load_model(keras_file)
    ```
    """
    classes = (
        SparseWrapper,
        TfmotMagnitudePruning,
        TfmotBlock,
        TfmotNM,
        tfmot_schedules.ConstantSparsity,
        tfmot_schedules.PolynomialDecay,
        OneShot,
    )
    objects = {cls.__name__: cls for cls in classes}
    objects.update({keras.saving.get_registered_name(cls): cls for cls in classes})
    objects["PruneLowMagnitude"] = SparseWrapper
    return keras.saving.custom_object_scope(objects)
