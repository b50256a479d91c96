"""How methods update their state during training, on the steps their
schedule chooses: each method returns its own `UpdateGroup` from
`new_update_group()`, so the updater and the callback need no change when a
method is added.
"""

import math

import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import dependency
from tf_sparsity import masks as mask_ops
from tf_sparsity import optimizer_state


class UpdateGroup:
    """The kernels sharing one method (one schedule, one compiled update).

    Args:
        method: the `SparsityMethod` whose kernels these are.

    Attributes:
        kernels: the `SparseKernel`s updated together (filled by the
            updater, in model order).
        model: the model being trained (set by the updater): groups that
            touch the optimizer's state reach it through `model.optimizer`.
    """

    def __init__(self, method):
        self.method = method
        self.kernels = []
        self.model = None
        self._assigning = (None, None)

    def due_update(self, last_checked, step):
        return self.method.step_schedule.due_update(last_checked, step)

    def update(self, step):
        raise NotImplementedError

    def run_compiled(self, compiled, *args):
        """Calls the group's compiled update, turning a backend's tracing
        error for Python control flow on tensors into one that names the
        method."""
        try:
            return compiled(*args)
        except Exception as error:
            if not _backend.reads_traced_value(error):
                raise
            name = type(self.method).__name__
            raise TypeError(
                f"{name}'s mask update reads a tensor's value in Python (an `if` "
                "on a tensor, `int(tensor)`, ...) in code it runs compiled: its "
                "`drop_scores`, `grow_scores` or structure. Mask updates are "
                "traced once with XLA and without AutoGraph, as under `jax.jit`; "
                f"write the choice with `keras.ops.where` or `keras.ops.cond`. "
                f"The backend said: {str(error).splitlines()[0]}"
            ) from error

    def assign_in_one_call(self, assign, variables, *values):
        """Runs `assign(*values)`, which assigns `variables`, as one call
        (`_backend.assigning_function`: one graph on TensorFlow, however
        many kernels the group has).

        The function is traced once and kept while the group assigns the
        same variables; another set (a new optimizer's slots, weights no
        longer held at zero) builds it again.
        """
        key = tuple(id(variable) for variable in variables)
        if self._assigning[0] != key:
            self._assigning = (key, _backend.assigning_function(assign))
        self._assigning[1](*values)


class RampUpdate(UpdateGroup):
    """Refreshes the regularizer weight of each kernel along the ramp."""

    def update(self, step):
        value = self.method.ramp.value(step)
        for kernel in self.kernels:
            kernel.state.penalty_scale.assign(value)


class MaskUpdate(UpdateGroup):
    """Recomputes the masks of one pruning method (one XLA function)."""

    def __init__(self, method):
        super().__init__(method)
        self._compiled = None

    def num_pruned(self, step):
        """Units (weights, or blocks) to prune in each kernel at `step`,
        exactly."""
        schedule, structure = self.method.schedule, self.method.structure
        scale = schedule.sparsity(step) / schedule.final_sparsity if (
            schedule.final_sparsity > 0
        ) else 0.0
        counts = []
        for kernel in self.kernels:
            target = kernel.target
            if target is None:
                target = schedule.final_sparsity
            units = structure.num_units(kernel.shape, kernel.input_axis)
            counts.append(mask_ops.num_to_prune(min(target * scale, 1.0), units))
        return counts

    def update(self, step):
        if self._compiled is None:
            seeds = [kernel.seed for kernel in self.kernels]
            axes = [kernel.input_axis for kernel in self.kernels]
            method = self.method

            def compute(kernels, masks, counts):
                return method.compute_masks(kernels, masks, counts, seeds, axes)

            self._compiled = _backend.jit_compile(compute)
        counts = ops.convert_to_tensor(np.asarray(self.num_pruned(step), "int32"))
        values = [ops.convert_to_tensor(k.variable) for k in self.kernels]
        masks = [ops.convert_to_tensor(k.state.mask) for k in self.kernels]
        self.assign_masks(self.run_compiled(self._compiled, values, masks, counts))

    def assign_masks(self, new_masks):
        """Writes the kernels' new masks, and zeroes the newly masked
        weights (and optimizer slots) of kernels whose masked weights are
        held at zero, in one call."""
        kernels, method = self.kernels, self.method
        kept = [kernel.wrapper.masked_zeros_kept for kernel in kernels]
        slots = optimizer_state.optimizer_slots(self.model) if any(kept) else {}
        kept_slots = [
            tuple(slots.get(id(kernel.variable), ())) if keep else None
            for kernel, keep in zip(kernels, kept)
        ]

        def assign(values):
            for kernel, value, kernel_slots in zip(kernels, values, kept_slots):
                kernel.state.mask.assign(value)
                if kernel_slots is not None:
                    method.keep_masked_zeros(kernel, kernel_slots)

        variables = [kernel.state.mask for kernel in kernels]
        for kernel, kernel_slots in zip(kernels, kept_slots):
            if kernel_slots is not None:
                variables += [kernel.variable, *kernel_slots]
        self.assign_in_one_call(assign, variables, list(new_masks))


class UnitMaskUpdate(MaskUpdate):
    """Recomputes the masks of a pruning method whose structure removes
    whole units across layers (`tfs.Units`, `tfs.Heads`).

    The dependency groups are those `sparsify` found (`dependency.analyze`
    keeps them on the model), turned into plans at the first update; each
    group's units are scored over every coupled kernel, ranked per
    group (`scope="layer"`) or over all groups (`"global"`), and the choice
    is expanded into every member kernel's mask (a kernel in two groups,
    along its output and its input axis, gets the product). One compiled
    function per method, as for `MaskUpdate`.

    Gradient scores (`score="taylor"`) need a recorded gradient: an update
    before any training step has run (all recorded gradients still zero)
    raises before any mask changes, instead of removing units by position.
    """

    def __init__(self, method):
        super().__init__(method)
        self._plans = None

    @property
    def plans(self):
        """The `GroupPlan`s of the dependency groups this method prunes."""
        if self._plans is None:
            self._plans = group_plans(self.model, self.kernels, self.method)
        return self._plans

    def num_pruned(self, step):
        """Units to prune in each dependency group at `step`."""
        schedule = self.method.schedule
        scale = schedule.sparsity(step) / schedule.final_sparsity if (
            schedule.final_sparsity > 0
        ) else 0.0
        return [
            min(mask_ops.num_to_prune(min(plan.target * scale, 1.0), plan.size), plan.size - 1)
            for plan in self.plans
        ]

    def update(self, step):
        if not self.plans:
            return
        needs_gradient = self.method.structure.needs_gradient
        if self._compiled is None:
            method, plans = self.method, self.plans
            seeds = [kernel.seed for kernel in self.kernels]

            def compute(kernels, masks, gradients, counts):
                new_masks = compute_unit_masks(
                    method, plans, kernels, masks, gradients, counts, seeds
                )
                if not needs_gradient:
                    return new_masks, ops.ones((len(plans),), "bool")
                return new_masks, gradients_recorded(plans, gradients)

            self._compiled = _backend.jit_compile(compute)
        counts = ops.convert_to_tensor(np.asarray(self.num_pruned(step), "int32"))
        values = [ops.convert_to_tensor(k.variable) for k in self.kernels]
        masks = [ops.convert_to_tensor(k.state.mask) for k in self.kernels]
        gradients = [
            ops.convert_to_tensor(k.state.gradient)
            if k.state.gradient is not None
            else ops.zeros((), "float32")
            for k in self.kernels
        ]
        new_masks, recorded = self.run_compiled(self._compiled, values, masks, gradients, counts)
        if needs_gradient:
            # Read back only on update steps: one small vector, computed in
            # the same compiled call as the masks.
            self.check_gradients_recorded(step, ops.convert_to_numpy(recorded))
        self.assign_masks(new_masks)

    def check_gradients_recorded(self, step, recorded):
        """Raises, before any mask changes, if a group scored by the
        gradient has none recorded (its gradient variables are still all
        zero, as created): every unit would score 0 and the lowest indices
        would be removed, whatever the weights."""
        missing = [plan.group.name for plan, ok in zip(self.plans, recorded) if not ok]
        if not missing:
            return
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"{type(self.method).__name__} with {self.method.structure!r} scores "
            "units by |w x dL/dw| from the gradient recorded at the last "
            f"training step, but at the update of step {step} no gradient has "
            f"been recorded for: {shown}. Every unit would score 0 and be "
            "removed by position. Start the schedule at step 1 or later (e.g. "
            "`tfs.OneShot(s, step=1)`, `tfs.ConstantSparsity(s, begin_step=1)`, "
            "`tfs.update_masks(model, step)` after a training step) so that one "
            "training step records the gradient first, or score by the weights "
            '(`score="l2"`). Layers that do not train (`trainable=False`) '
            "never record one."
        )


class GroupPlan:
    """One dependency group as the mask update sees it.

    Attributes:
        group: the `dependency.UnitGroup`.
        target: its final sparsity (the lowest of its producers').
        members: `(kernel position, axis, segment ids)` of every scored
            coupling: segment ids map each position along `axis` to its
            unit, or to `size` for positions of other groups.
        weights_per_unit: float32 array, how many weights each unit has
            over all members (scores are means over them).
    """

    def __init__(self, group, target, members, shapes):
        self.group = group
        self.size = group.size
        self.target = target
        self.members = members
        counts = np.zeros(group.size + 1)
        for (position, axis, segments), shape in zip(members, shapes):
            per_position = math.prod(shape) // shape[axis]
            counts += np.bincount(segments, minlength=group.size + 1) * per_position
        self.weights_per_unit = np.maximum(counts[: group.size], 1).astype("float32")


def group_plans(model, kernels, method):
    """The `GroupPlan`s of the groups whose producers are all among
    `kernels` (the method's) and whose every scored kernel is wrapped."""
    position = {(id(k.layer), k.spec.attribute): i for i, k in enumerate(kernels)}
    plans = []
    for group in dependency.analyze(model, method.structure.coupled_kind).groups:
        scored = [c for c in group.couplings if c.scored]
        keys = [(id(c.layer), c.attribute) for c in scored]
        if not scored or any(key not in position for key in keys):
            continue
        producers = [i for i, k in enumerate(kernels) if any(k.layer is p for p in group.producers)]
        targets = [kernels[p].target for p in producers]
        targets = [method.final_sparsity if t is None else t for t in targets]
        target = min(targets) if targets else 0.0
        if target <= 0:
            continue
        members = [
            (position[key], c.axis, np.where(c.index < 0, group.size, c.index).astype("int32"))
            for key, c in zip(keys, scored)
        ]
        shapes = [kernels[p].shape for p, _, _ in members]
        plans.append(GroupPlan(group, target, members, shapes))
    return plans


def gradients_recorded(plans, gradients):
    """Bool per plan: whether any of its members' recorded gradients is
    non-zero. The recording variables start at zero and a training step
    overwrites them, so all zeros means no step has run (pure; compiled)."""
    nonzero = [
        ops.any(ops.not_equal(gradient, ops.zeros((), gradient.dtype))) for gradient in gradients
    ]
    flags = []
    for plan in plans:
        found = ops.zeros((), "bool")
        for position, _, _ in plan.members:
            found = ops.logical_or(found, nonzero[position])
        flags.append(found)
    return ops.stack(flags)


def _per_position(x, axis):
    """Sums `x` over every axis but `axis`."""
    other = tuple(a for a in range(len(x.shape)) if a != axis)
    return ops.sum(x, axis=other) if other else x


def compute_unit_masks(method, plans, kernels, masks, gradients, counts, seeds):
    """New masks of every kernel from one unit ranking per group (pure;
    compiled with XLA). Kernels in no group keep their masks."""
    structure = method.structure
    scores = []
    for plan in plans:
        total = ops.zeros((plan.size + 1,), "float32")
        live = ops.zeros((plan.size + 1,), "float32")
        for position, axis, segments in plan.members:
            value = ops.cast(kernels[position], "float32")
            mask = ops.cast(masks[position], "float32")
            weight_scores = method.drop_scores(value, mask, seeds[position])
            terms = structure.weight_scores(
                weight_scores * mask, ops.cast(gradients[position], "float32")
            )
            ids = ops.convert_to_tensor(segments)
            total = total + ops.segment_sum(
                _per_position(terms, axis), ids, num_segments=plan.size + 1
            )
            live = live + ops.segment_sum(
                _per_position(mask, axis), ids, num_segments=plan.size + 1
            )
        score = total[: plan.size] / ops.convert_to_tensor(plan.weights_per_unit)
        # Permanent masks: pruned units rank below every live one.
        scores.append(ops.where(ops.greater(live[: plan.size], 0.0), score, -1.0))
    if method.scope == "global":
        kept = mask_ops.prune_lowest_jointly(scores, ops.sum(counts))
    else:
        kept = [mask_ops.prune_lowest(s, counts[i]) for i, s in enumerate(scores)]
    new_masks = [None] * len(masks)
    for plan, units in zip(plans, kept):
        padded = ops.concatenate([ops.cast(units, "float32"), ops.ones((1,), "float32")])
        for position, axis, segments in plan.members:
            shape = masks[position].shape
            along = ops.take(padded, ops.convert_to_tensor(segments))
            broadcast = [1] * len(shape)
            broadcast[axis] = shape[axis]
            factor = ops.reshape(along, broadcast)
            current = new_masks[position]
            new_masks[position] = factor if current is None else current * factor
    return [
        mask if new is None else ops.cast(ops.broadcast_to(new, mask.shape), mask.dtype)
        for mask, new in zip(masks, new_masks)
    ]
