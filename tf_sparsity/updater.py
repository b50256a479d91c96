"""Recomputing masks on the steps a schedule chooses.

The schedule is read in Python (cheap integer arithmetic), and only on steps
where an update is due does a compiled (XLA) function compute the new masks
for all kernels sharing a method, which are then assigned to the mask
variables. Between updates the training step costs only the `kernel * mask`
multiply in the forward pass.

Mask variables are assigned outside the replicas' step (cross-replica
context), so under `tf.distribute` every replica receives the same values.
"""

import zlib

import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import masks as mask_ops
from tf_sparsity import methods as methods_lib
from tf_sparsity import sparsify as sparsify_lib
from tf_sparsity import tree



class _Entry:
    """One sparse kernel: its wrapper, attribute, path and stable seed."""

    def __init__(self, path, wrapper, attribute):
        self.path = path
        self.wrapper = wrapper
        self.attribute = attribute
        self.size = int(np.prod(wrapper.dense_kernel(attribute).shape))
        self.seed = zlib.crc32(f"{path}/{attribute}".encode()) & 0x7FFFFFFF

    @property
    def kernel(self):
        return self.wrapper.dense_kernel(self.attribute)

    @property
    def mask(self):
        return self.wrapper.sparsity_variables[self.attribute]["mask"]


class _Group:
    """Kernels sharing one method (and so one schedule and one compile)."""

    def __init__(self, method):
        self.method = method
        self.entries = []
        self._compiled = None

    def due_update(self, last_checked, step):
        return self.method.step_schedule.due_update(last_checked, step)

    def update(self, step):
        raise NotImplementedError


class _RampGroup(_Group):
    """Kernels whose regularizer weight ramps up: refreshes the scale."""

    def update(self, step):
        value = self.method.ramp.value(step)
        for entry in self.entries:
            entry.wrapper.sparsity_variables[entry.attribute]["penalty_scale"].assign(value)


class _MaskGroup(_Group):
    """Kernels of one pruning method: recomputes their masks (XLA)."""

    def num_pruned(self, step):
        schedule = self.method.schedule
        scale = schedule.sparsity(step) / schedule.final_sparsity if (
            schedule.final_sparsity > 0
        ) else 0.0
        counts = []
        for entry in self.entries:
            target = entry.wrapper.target_sparsity
            if target is None:
                target = schedule.final_sparsity
            counts.append(mask_ops.num_to_prune(min(target * scale, 1.0), entry.size))
        return counts

    def update(self, step):
        if self._compiled is None:
            seeds = [entry.seed for entry in self.entries]
            method = self.method

            def compute(kernels, masks, counts):
                return method.compute_masks(kernels, masks, counts, seeds)

            self._compiled = _backend.jit_compile(compute)
        counts = ops.convert_to_tensor(np.asarray(self.num_pruned(step), "int32"))
        kernels = [ops.convert_to_tensor(e.kernel) for e in self.entries]
        masks = [ops.convert_to_tensor(e.mask) for e in self.entries]
        for entry, value in zip(self.entries, self._compiled(kernels, masks, counts)):
            entry.mask.assign(value)


class MaskUpdater:
    """Finds a model's sparse kernels and recomputes their masks when due.

    Args:
        model: a model returned by `tfs.sparsify` (or holding
            `SparseWrapper`s).
    """

    def __init__(self, model):
        self.model = model
        self.wrappers = [w for _, w in sparsify_lib.sparse_layers(model)]
        self.groups = []
        for path, wrapper in sparsify_lib.sparse_layers(model):
            if not wrapper.method.requires_step_updates:
                continue
            group = next(
                (g for g in self.groups if g.method == wrapper.method), None
            )
            if group is None:
                kind = (
                    _MaskGroup
                    if isinstance(wrapper.method, methods_lib.PruningMethod)
                    else _RampGroup
                )
                group = kind(wrapper.method)
                self.groups.append(group)
            for attribute in wrapper.kernel_attributes:
                group.entries.append(_Entry(path, wrapper, attribute))

    @property
    def has_learned_sparsity(self):
        """Whether sparsity can change on every step (regularized methods)."""
        return any(isinstance(g, _RampGroup) for g in self.groups) or any(
            isinstance(w.method, methods_lib.RegularizedMethod) for w in self.wrappers
        )

    def attach(self):
        """Marks every wrapper as driven by this updater (see SparseWrapper)."""
        for wrapper in self.wrappers:
            wrapper._step_updates_attached = True

    def due_groups(self, last_checked, step):
        """Groups whose schedule has an update in (`last_checked`, `step`]."""
        return [
            (group, due)
            for group in self.groups
            if (due := group.due_update(last_checked, step)) is not None
        ]

    def update(self, step, last_checked=None):
        """Recomputes the masks whose update is due; returns True if any was.

        Args:
            step: the training step about to run (`optimizer.iterations`).
            last_checked: the step of the previous check; updates scheduled in
                (`last_checked`, `step`] are applied now. Defaults to
                `step - 1` (only updates due exactly at `step`).
        """
        step = int(step)
        if last_checked is None:
            last_checked = step - 1
        due = self.due_groups(last_checked, step)
        for group, due_step in due:
            group.update(due_step)
        return bool(due)


def get_updater(model):
    """The model's `MaskUpdater`, built once and cached on the model."""
    updater = getattr(model, tree.UPDATER_ATTRIBUTE, None)
    if updater is None:
        updater = MaskUpdater(model)
        object.__setattr__(model, tree.UPDATER_ATTRIBUTE, updater)
    return updater


def update_masks(model, step):
    """Updates the masks of `model` if its schedule has an update at `step`.

    Call it before every training step of a custom training loop (it does
    work only on the steps the schedule chooses); `model.fit` users add
    `tfs.SparsityCallback()` instead. On JAX, call it where the model's
    variables hold the current state (outside `stateless_call`).

    Args:
        model: the sparse model.
        step: the index of the step about to run (e.g.
            `optimizer.iterations`), a Python int or scalar tensor.

    Returns:
        True if masks were recomputed at this step.
    """
    try:
        value = ops.convert_to_numpy(step)
    except Exception:  # Backends raise different types for bad values.
        value = None
    if value is None or value.shape != () or value.dtype.kind not in "iu":
        raise TypeError(
            "update_masks: `step` must be an integer step (a Python int or a "
            f"scalar integer tensor such as optimizer.iterations), got {step!r}."
        )
    updater = get_updater(model)
    updater.attach()
    return updater.update(int(value))
