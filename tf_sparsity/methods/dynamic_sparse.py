"""Dynamic sparse training: sparse from the first step, connections moved.

The base of SET (Mocanu et al., 2018) and RigL (Evci et al., 2020). Each
kernel starts with a random mask at its target sparsity. Every
`update_frequency` steps up to `end_step`, it drops the `drop_fraction(t)`
of its live units with the lowest drop score (magnitude) and grows as many
dead ones (the subclass's grow score chooses which), so the sparsity never
changes. Grown weights start at zero and their optimizer moments are reset;
dropped weights are zeroed. Units follow the method's `structure`: weights,
blocks (`Block`), or weights with `n` kept in every group of `m` (`NM`).
"""

import math
import zlib

import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import _validation as validate
from tf_sparsity import masks as mask_ops
from tf_sparsity import optimizer_state
from tf_sparsity import schedules as schedules_lib
from tf_sparsity.methods import base
from tf_sparsity.methods import updates

DECAYS = ("cosine", "constant")


class DynamicSparseMethod(base.MaskedMethod):
    """Base of SET and RigL (see the module docstring).

    Args:
        sparsity: the target sparsity, held from step 0 to the end.
        update_frequency: steps between drop-and-grow updates (the first at
            step `update_frequency`).
        drop_fraction: fraction of each kernel's live units moved at an
            update, before decay.
        drop_fraction_decay: "cosine" (to 0 at `end_step`, as the reference
            implementation) or "constant".
        end_step: the schedule's last step: updates happen up to and
            including it (with the cosine decay the fraction is 0 there);
            None: updates go on for the whole run (then the decay must be
            "constant").
        seed: int seed of the initial masks and of random growth; None
            draws one (recorded in the config).
        structure: `tfs.Unstructured()` (default), `tfs.Block((rows, cols))`
            (blocks move as units) or `tfs.NM(n, m)` (each group keeps `n`;
            the sparsity must be `1 - n/m`).
        scope: "layer" (each kernel moves its own fraction) or "global"
            (one drop and one grow ranking over all kernels: per-layer
            sparsities can change, the total cannot).
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
        structure=None,
        scope="layer",
    ):
        owner = type(self).__name__
        self.sparsity = validate.sparsity(owner, "sparsity", sparsity)
        if self.sparsity == 0.0:
            raise ValueError(
                f"{owner}: `sparsity` is 0.0, so every weight stays and no "
                "connection can move; dynamic sparse training needs a "
                "sparsity in (0, 1)."
            )
        self.update_frequency = validate.integer(owner, "update_frequency", update_frequency, minimum=1)
        self.drop_fraction = validate.number(owner, "drop_fraction", drop_fraction, minimum=0.0, maximum=1.0)
        self.drop_fraction_decay = validate.choice(owner, "drop_fraction_decay", drop_fraction_decay, DECAYS)
        if end_step is not None:
            end_step = validate.integer(owner, "end_step", end_step, minimum=1)
            if end_step < self.update_frequency:
                raise ValueError(
                    f"{owner}: end_step ({end_step}) comes before the first "
                    f"update (step update_frequency={self.update_frequency}), "
                    "so no connection would ever move."
                )
            if end_step == self.update_frequency and self.drop_fraction_decay == "cosine":
                raise ValueError(
                    f"{owner}: the only update is at end_step ({end_step} = "
                    "update_frequency), where the cosine decay has brought "
                    "the drop fraction to 0, so no connection would ever "
                    "move. Give an end_step after update_frequency, or "
                    'drop_fraction_decay="constant".'
                )
        elif self.drop_fraction_decay == "cosine":
            raise ValueError(
                f"{owner}: the cosine decay of the drop fraction reaches 0 at "
                "`end_step`; give end_step (e.g. 75% of the training steps), "
                'or use drop_fraction_decay="constant".'
            )
        self.end_step = end_step
        self.seed = validate.seed_or_draw(owner, seed)
        schedule = schedules_lib.ConstantSparsity(
            self.sparsity,
            begin_step=self.update_frequency,
            end_step=end_step,
            frequency=self.update_frequency,
        )
        super().__init__(schedule, structure=structure, scope=scope)

    def new_update_group(self):
        return DropAndGrowUpdate(self)

    def fraction_at(self, step):
        """The fraction of live units moved at `step`."""
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
        owner = cls.__name__
        if overrides.pop("begin_step", None) not in (None, 0):
            raise ValueError(
                f"{owner} trains sparse from step 0: `begin_step` does not apply."
            )
        # An explicit value is used as given (or refused), never replaced.
        end = overrides.pop("end_step", None)
        if end is None:
            end = max(int(0.75 * total_steps), 1)
        else:
            end = validate.integer(owner, "end_step", end, minimum=1)
        frequency = overrides.pop("frequency", None)
        if frequency is None:
            frequency = min(100, max(end // 20, 1))
        else:
            frequency = validate.integer(owner, "frequency", frequency, minimum=1)
        overrides.setdefault("update_frequency", frequency)
        overrides.setdefault("end_step", end)
        return cls(target_sparsity, **cls._seeded(overrides, seed))

    def build(self, kernel):
        state = super().build(kernel)
        target = kernel.target if kernel.target is not None else self.sparsity
        state.mask.assign(self.initial_mask(kernel, target))
        return state

    def initial_mask(self, kernel, target):
        """A random 0/1 mask with exactly `target` of the units pruned,
        seeded by `seed` and the kernel's path (same on every replica)."""
        # The path without the model's own (auto-numbered) name, so that two
        # builds of one model get the same masks.
        path = kernel.variable.path.split("/", 1)[-1]
        rng = np.random.default_rng([self.seed, zlib.crc32(path.encode())])
        priorities = rng.random(kernel.shape, dtype=np.float32)
        structure, axis = self.structure, kernel.input_axis
        units = structure.num_units(kernel.shape, axis)
        kept = mask_ops.prune_lowest(
            structure.unit_scores(ops.convert_to_tensor(priorities), axis),
            mask_ops.num_to_prune(target, units),
        )
        mask = structure.expand(kept, kernel.shape, axis)
        return ops.convert_to_numpy(mask).astype(kernel.variable.dtype)

    def move_masks(self, kernels, masks, grow_scores, counts, seeds, input_axes):
        """New masks of a group of kernels (pure; compiled with XLA).

        Args:
            kernels: list of kernel tensors.
            masks: list of their current masks.
            grow_scores: list of per-weight grow scores.
            counts: int32 tensor, units moved in each kernel (global
                scope: its sum is moved over all kernels).
            seeds: list of Python ints, one per kernel.
            input_axes: list of each kernel's input axis (or None).

        Returns:
            A list of `(new_mask, kept)` float32 pairs.
        """
        structure = self.structure
        drops = [
            self.drop_scores(ops.cast(k, "float32"), ops.cast(m, "float32"), s)
            for k, m, s in zip(kernels, masks, seeds)
        ]
        if self.scope == "global":
            return structure.move_jointly(masks, drops, grow_scores, ops.sum(counts), input_axes)
        return [
            structure.move(m, d, g, counts[i], axis)
            for i, (m, d, g, axis) in enumerate(zip(masks, drops, grow_scores, input_axes))
        ]

    def get_config(self):
        return {
            "sparsity": self.sparsity,
            "update_frequency": self.update_frequency,
            "drop_fraction": self.drop_fraction,
            "drop_fraction_decay": self.drop_fraction_decay,
            "end_step": self.end_step,
            "seed": self.seed,
            **self.axes_config(),
        }


class DropAndGrowUpdate(updates.UpdateGroup):
    """Moves connections of one dynamic sparse method's kernels."""

    def __init__(self, method):
        super().__init__(method)
        self._compiled = None

    def move_counts(self, step, masks):
        """Units moved in each kernel at `step` (global scope: the total
        over all kernels, in the first entry)."""
        method = self.method
        fraction = method.fraction_at(step)
        live = [
            method.structure.count_active(mask, kernel.input_axis)
            for kernel, mask in zip(self.kernels, masks)
        ]
        if method.scope == "global":
            return [mask_ops.num_to_prune(fraction, sum(live))] + [0] * (len(live) - 1)
        return [mask_ops.num_to_prune(fraction, count) for count in live]

    def check_gradient_recorded(self, step):
        """Raises, before any mask changes, if no kernel of the group has a
        recorded gradient (all still zero, as created: no training step has
        run since the model was built), since growing by it would then
        choose connections by position. One host read per update."""
        nonzero = [
            ops.any(ops.not_equal(kernel.method.gradient(kernel), 0)) for kernel in self.kernels
        ]
        if ops.convert_to_numpy(ops.any(ops.stack(nonzero))):
            return
        raise ValueError(
            f"{type(self.method).__name__} grows connections by the gradient "
            "recorded at the last training step, but at its update of step "
            f"{step} no kernel has one recorded (no training step has run "
            "since the model was built): every candidate would score 0 and be "
            "grown by position. Call `tfs.update_masks(model, step)` after a "
            "training step (with `fit` and `tfs.SparsityCallback()` the first "
            "update comes after `update_frequency` steps)."
        )

    def update(self, step):
        method = self.method
        if self._compiled is None:
            seeds = [kernel.seed for kernel in self.kernels]
            axes = [kernel.input_axis for kernel in self.kernels]
            self._compiled = _backend.jit_compile(
                lambda kernels, masks, grows, counts: method.move_masks(
                    kernels, masks, grows, counts, seeds, axes
                )
            )
        method.check_optimizer(optimizer_state.training_optimizer(self.model))
        if method.needs_gradient:
            self.check_gradient_recorded(step)
        masks = [ops.convert_to_tensor(k.state.mask) for k in self.kernels]
        counts = self.move_counts(step, masks)
        results = self.run_compiled(
            self._compiled,
            [ops.convert_to_tensor(k.variable) for k in self.kernels],
            masks,
            [ops.cast(method.grow_scores(k, step), "float32") for k in self.kernels],
            ops.convert_to_tensor(np.asarray(counts, "int32")),
        )
        slots = optimizer_state.optimizer_slots(self.model)
        kernels = self.kernels
        zeroed = [(k.variable, *slots.get(id(k.variable), ())) for k in kernels]

        def assign(results):
            for kernel, targets, (new, kept) in zip(kernels, zeroed, results):
                mask = kernel.state.mask
                mask.assign(ops.cast(new, mask.dtype))
                # Dropped weights are zeroed and grown ones (a just-dropped
                # one regrown too) start at zero, their optimizer moments too.
                for target in targets:
                    target.assign(ops.multiply(target, ops.cast(kept, target.dtype)))

        variables = [k.state.mask for k in kernels] + [v for group in zeroed for v in group]
        self.assign_in_one_call(assign, variables, [tuple(result) for result in results])

