"""Dynamic sparse training: sparse from the first step, connections moved.

The base of SET (Mocanu et al., 2018) and RigL (Evci et al., 2020). Each
kernel starts with a random mask at its target sparsity. Every
`update_frequency` steps until `end_step`, it drops the `drop_fraction(t)`
of its active weights with the smallest magnitude and grows as many
inactive ones (the subclass chooses which), so the sparsity never changes.
Grown weights start at zero and their optimizer moments are reset; dropped
weights are zeroed.
"""

import math
import zlib

import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import _validation as validate
from tf_sparsity import masks as mask_ops
from tf_sparsity.methods import base
from tf_sparsity.methods import updates
from tf_sparsity.schedules import ConstantSparsity

DECAYS = ("cosine", "constant")
# A score above (or below) every real one: keeps a weight out of a selection.
_OUTSIDE = float(np.finfo("float32").max)


class DropSchedule(ConstantSparsity):
    """Updates every `update_frequency` steps from step `update_frequency`
    on, none at or after `end_step` (None: no end); the sparsity is
    constant.

    Args:
        sparsity: the target, reported to logs.
        update_frequency: steps between updates.
        end_step: the step updates stop at, or None.
    """

    def __init__(self, sparsity, update_frequency, end_step=None):
        super().__init__(sparsity, begin_step=update_frequency, frequency=update_frequency)
        self.stop_step = end_step

    def last_update_step(self, step):
        if self.stop_step is not None:
            step = min(step, self.stop_step - 1)
        return super().last_update_step(step)

    def get_config(self):
        return {**super().get_config(), "stop_step": self.stop_step}


class DynamicSparseMethod(base.MaskedMethod):
    """Base of SET and RigL (see the module docstring).

    Args:
        sparsity: the target sparsity, held from step 0 to the end.
        update_frequency: steps between drop-and-grow updates.
        drop_fraction: fraction of each kernel's active weights moved at an
            update, before decay.
        drop_fraction_decay: "cosine" (to 0 at `end_step`, as the reference
            implementation) or "constant".
        end_step: the last updates come before this step; None: updates
            go on for the whole run (then the decay must be "constant").
        seed: int seed of the initial masks and of random growth; None
            draws one (recorded in the config).
    """

    uses_seed = True

    def __init__(
        self,
        sparsity,
        update_frequency=100,
        drop_fraction=0.3,
        drop_fraction_decay="cosine",
        end_step=None,
        seed=None,
    ):
        owner = type(self).__name__
        self.sparsity = validate.sparsity(owner, "sparsity", sparsity)
        self.update_frequency = validate.integer(owner, "update_frequency", update_frequency, minimum=1)
        self.drop_fraction = validate.number(owner, "drop_fraction", drop_fraction, minimum=0.0, maximum=1.0)
        self.drop_fraction_decay = validate.choice(owner, "drop_fraction_decay", drop_fraction_decay, DECAYS)
        if end_step is not None:
            end_step = validate.integer(owner, "end_step", end_step, minimum=1)
        elif self.drop_fraction_decay == "cosine":
            raise ValueError(
                f"{owner}: the cosine decay of the drop fraction reaches 0 at "
                "`end_step`; give end_step (e.g. 75% of the training steps), "
                'or use drop_fraction_decay="constant".'
            )
        self.end_step = end_step
        self.seed = validate.seed_or_draw(owner, seed)

    @property
    def final_sparsity(self):
        return self.sparsity

    @property
    def step_schedule(self):
        return DropSchedule(self.sparsity, self.update_frequency, self.end_step)

    def new_update_group(self):
        return DropAndGrowUpdate(self)

    def fraction_at(self, step):
        """The fraction of active weights moved at `step`."""
        if self.drop_fraction_decay == "constant":
            return self.drop_fraction
        progress = min(max(step / self.end_step, 0.0), 1.0)
        return self.drop_fraction * 0.5 * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def recipe(cls, target_sparsity, total_steps, num_examples=None, seed=None, **overrides):
        """RigL's ImageNet settings: drop 30% with cosine decay, every 100
        steps (fewer on short runs: at least 20 updates), ending at 75% of
        training. `frequency` and `end_step` (the runs' schedule flags) set
        `update_frequency` and `end_step`; `begin_step` does not apply (these
        methods are sparse from step 0)."""
        if overrides.pop("begin_step", None) not in (None, 0):
            raise ValueError(
                f"{cls.__name__} trains sparse from step 0: `begin_step` does not apply."
            )
        end = overrides.pop("end_step", None) or max(int(0.75 * total_steps), 1)
        frequency = overrides.pop("frequency", None) or min(100, max(end // 20, 1))
        overrides.setdefault("update_frequency", frequency)
        overrides.setdefault("end_step", end)
        return cls(target_sparsity, **cls._seeded(overrides, seed))

    def build(self, wrapper, attribute, kernel):
        state = super().build(wrapper, attribute, kernel)
        target = wrapper.target_sparsity if wrapper.target_sparsity is not None else self.sparsity
        state["mask"].assign(self.initial_mask(kernel, target))
        return state

    def initial_mask(self, kernel, target):
        """A random 0/1 mask with exactly `target` of the weights pruned,
        seeded by `seed` and the kernel's path (same on every replica)."""
        size = int(np.prod(kernel.shape))
        # The path without the model's own (auto-numbered) name, so that two
        # builds of one model get the same masks.
        path = kernel.path.split("/", 1)[-1]
        rng = np.random.default_rng([self.seed, zlib.crc32(path.encode())])
        mask = np.ones(size, kernel.dtype)
        mask[rng.permutation(size)[: mask_ops.num_to_prune(target, size)]] = 0
        return mask.reshape(kernel.shape)

    def growth_scores(self, entry, step):
        """Per-weight scores of the update at `step`; the highest inactive
        ones are grown (a tensor shaped like the kernel)."""
        raise NotImplementedError

    def check_optimizer(self, optimizer):
        """Raises if the model's optimizer (None if not compiled) cannot
        train this method correctly; checked before every update."""

    def get_config(self):
        return {
            "sparsity": self.sparsity,
            "update_frequency": self.update_frequency,
            "drop_fraction": self.drop_fraction,
            "drop_fraction_decay": self.drop_fraction_decay,
            "end_step": self.end_step,
            "seed": self.seed,
        }


def drop_and_grow(kernel, mask, growth_scores, num_moved):
    """The new mask: `num_moved` active weights of smallest |kernel| dropped,
    `num_moved` inactive ones of highest `growth_scores` grown (just-dropped
    ones included, as in the reference implementation). Exact counts, ties
    broken by position.

    Returns:
        `(new_mask, kept)`: float32 0/1 tensors; `kept` marks the active
        weights that were not dropped (the only ones that keep their value).
    """
    active = ops.greater(ops.cast(mask, "float32"), 0.5)
    drop_keys = ops.where(active, ops.abs(ops.cast(kernel, "float32")), _OUTSIDE)
    after_drop = ops.logical_and(active, ops.greater(mask_ops.prune_lowest(drop_keys, num_moved), 0.5))
    grow_keys = ops.where(after_drop, _OUTSIDE, -ops.cast(growth_scores, "float32"))
    grown = ops.less(mask_ops.prune_lowest(grow_keys, num_moved), 0.5)
    return ops.cast(ops.logical_or(after_drop, grown), "float32"), ops.cast(after_drop, "float32")


class DropAndGrowUpdate(updates.UpdateGroup):
    """Moves connections of one dynamic sparse method's kernels."""

    def __init__(self, method):
        super().__init__(method)
        self._compiled = None

    def update(self, step):
        if self._compiled is None:
            self._compiled = _backend.jit_compile(
                lambda kernels, masks, scores, counts: [
                    drop_and_grow(k, m, s, counts[i])
                    for i, (k, m, s) in enumerate(zip(kernels, masks, scores))
                ]
            )
        self.method.check_optimizer(training_optimizer(self.model))
        fraction = self.method.fraction_at(step)
        old_masks = [ops.convert_to_numpy(e.state("mask")) for e in self.entries]
        counts = [mask_ops.num_to_prune(fraction, int(m.sum())) for m in old_masks]
        if not any(counts):
            return
        results = self._compiled(
            [ops.convert_to_tensor(e.kernel) for e in self.entries],
            [ops.convert_to_tensor(m) for m in old_masks],
            [self.method.growth_scores(e, step) for e in self.entries],
            ops.convert_to_tensor(np.asarray(counts, "int32")),
        )
        slots = optimizer_slots(self.model)
        for entry, (new, kept) in zip(self.entries, results):
            mask = entry.state("mask")
            mask.assign(ops.cast(new, mask.dtype))
            # Dropped weights are zeroed and grown ones (a just-dropped one
            # regrown too) start at zero, their optimizer moments too.
            kernel = entry.kernel
            for variable in (kernel, *slots.get(id(kernel), ())):
                variable.assign(ops.multiply(variable, ops.cast(kept, variable.dtype)))


def training_optimizer(model):
    """The optimizer that updates the model's variables (the one inside a
    `LossScaleOptimizer`), or None."""
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", optimizer)


def optimizer_slots(model):
    """`{id(variable): [optimizer variables shaped like it]}` of the model's
    built optimizer (momentum, Adam's moments, ...), or {}."""
    optimizer = training_optimizer(model)
    if optimizer is None or not getattr(optimizer, "built", False):
        return {}
    variables = list(optimizer._trainable_variables)
    model_ids = {id(v) for v in variables}
    slots = {}
    for value in vars(optimizer).values():
        # Keras optimizers keep one list per kind of slot, aligned with the
        # trainable variables (None where a variable has no slot).
        if not isinstance(value, list) or len(value) != len(variables):
            continue
        for variable, slot in zip(variables, value):
            if (
                slot is not None
                and id(slot) not in model_ids
                and hasattr(slot, "assign")
                and tuple(slot.shape) == tuple(variable.shape)
            ):
                slots.setdefault(id(variable), []).append(slot)
    return slots
