"""Recomputing masks on the steps a schedule chooses.

The schedule is read in Python (cheap integer arithmetic), and only on steps
where an update is due does a compiled (XLA) function compute the new masks
for all kernels sharing a method, which are then assigned to the mask
variables. Between updates the training step costs only the `kernel * mask`
multiply in the forward pass.

Mask variables are assigned outside the replicas' step (cross-replica
context), so under `tf.distribute` every replica receives the same values.
"""

from keras import ops

from tf_sparsity import optimizer_state
from tf_sparsity import schedules as schedules_lib
from tf_sparsity import tree
from tf_sparsity.methods.base import MaskedMethod
from tf_sparsity.methods.base import PruningMethod
from tf_sparsity.sparsify import sparse_kernels
from tf_sparsity.sparsify import sparse_layers


class MaskUpdater:
    """Finds a model's sparse kernels and recomputes their masks when due.

    Args:
        model: a model returned by `tfs.sparsify` (or holding
            `SparseWrapper`s).
    """

    def __init__(self, model):
        self.model = model
        self.wrappers = [wrapper for _, wrapper in sparse_layers(model)]
        self.kernels = sparse_kernels(model)
        self.groups = []
        self._zeros_kept_for = None
        for kernel in self.kernels:
            method = kernel.method
            if not method.requires_step_updates:
                continue
            group = next((g for g in self.groups if g.method == method), None)
            if group is None:
                group = method.new_update_group()
                group.model = model
                self.groups.append(group)
            group.kernels.append(kernel)

    @property
    def has_learned_sparsity(self):
        """Whether sparsity can change on every step (VD, L0)."""
        return any(w.method.learned_sparsity for w in self.wrappers)

    def attach(self, refresh=False):
        """Marks every wrapper as driven by this updater (see SparseWrapper),
        and holds masked weights at zero where the optimizer allows it.

        Args:
            refresh: zero the masked weights again even if this optimizer
                was seen before (weights or masks may have been loaded
                since: the callback refreshes at the start of every `fit`).
        """
        for wrapper in self.wrappers:
            wrapper._step_updates_attached = True
        optimizer = optimizer_state.training_optimizer(self.model)
        if refresh or optimizer is not self._zeros_kept_for:
            self.keep_masked_zeros(optimizer)

    def keep_masked_zeros(self, optimizer):
        """Zeroes the masked weights (and their optimizer slots) of every
        masked method that allows it, when `optimizer` keeps zero weights at
        zero, so training computes with the variables as they are (no mask
        multiply in the forward pass; see `MaskedMethod.keep_masked_zeros`).
        Otherwise training multiplies by the mask at every step. A traced
        training step is retraced when this changes."""
        keeps = optimizer_state.keeps_zeros(optimizer)
        slots = optimizer_state.optimizer_slots(self.model) if keeps else {}
        changed = False
        for kernel in self.kernels:
            method = kernel.method
            kept = keeps and isinstance(method, MaskedMethod) and method.can_keep_masked_zeros
            if kept:
                method.keep_masked_zeros(kernel, slots.get(id(kernel.variable), ()))
            if kernel.wrapper.masked_zeros_kept != kept:
                kernel.wrapper.masked_zeros_kept = kept
                changed = True
        self._zeros_kept_for = optimizer
        if changed and getattr(self.model, "train_function", None) is not None:
            self.model.make_train_function(force=True)

    def due_groups(self, last_checked, step):
        """Groups whose schedule has an update in (`last_checked`, `step`]."""
        return [
            (group, due)
            for group in self.groups
            if (due := group.due_update(last_checked, step)) is not None
        ]

    def update(self, step, last_checked=None, before_update=None):
        """Runs the updates that are due; returns True if any was.

        Args:
            step: the training step about to run (`optimizer.iterations`).
            last_checked: the step of the previous check; updates scheduled in
                (`last_checked`, `step`] are applied now. Defaults to
                `step - 1` (only updates due exactly at `step`).
            before_update: called once before the first update, only when
                one is due (the callback syncs the trainer's state there).
        """
        step = int(step)
        if last_checked is None:
            last_checked = step - 1
        due = self.due_groups(last_checked, step)
        if due and before_update is not None:
            before_update()
        for group, due_step in due:
            group.update(due_step)
        return bool(due)


    def unfinished_schedules(self, last_step):
        """What each schedule still has to do after `last_step`.

        Args:
            last_step: the last training step that will run.

        Returns:
            One line per method whose schedule ends after `last_step`,
            naming the method, its end step and what is reached by then
            (empty when every schedule finishes in time).
        """
        lines = []
        for group in self.groups:
            method = group.method
            schedule = method.step_schedule
            end = getattr(schedule, "final_update_step", None)  # Custom schedules may lack it.
            if end is None or end <= last_step:
                continue
            name = type(method).__name__
            latest = schedule.last_update_step(last_step)
            if isinstance(method, PruningMethod):
                reached = 0.0 if latest is None else schedule.sparsity(latest)
                outcome = (
                    f"sparsity reaches {reached:.1%} of its "
                    f"{schedule.final_sparsity:.1%} target"
                )
            elif isinstance(schedule, schedules_lib.Ramp):
                outcome = (
                    f"the penalty reaches {schedule.value(last_step):.0%} of "
                    "its full weight"
                )
            elif latest is None:
                outcome = "no update runs"
            else:
                outcome = f"its updates after step {latest} never run"
            lines.append(f"{name} ends at step {end}: {outcome}")
        return lines


def get_updater(model, caller=None):
    """The model's `MaskUpdater`, built once and cached on the model.

    Args:
        model: the sparse model.
        caller: if set, a model without sparse layers is refused with an
            error naming this caller (what `SparsityCallback` and
            `update_masks` need: training such a model would not make it
            sparse).
    """
    updater = getattr(model, tree.UPDATER_ATTRIBUTE, None)
    if updater is None:
        updater = MaskUpdater(model)
        object.__setattr__(model, tree.UPDATER_ATTRIBUTE, updater)
    if caller is not None and not updater.wrappers:
        raise ValueError(
            f"{caller}: model '{model.name}' has no sparse layer, so training "
            "it would not make it sparse. Call `tfs.sparsify(model, method)` "
            "on it before compiling."
        )
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

    Raises:
        TypeError: `step` is not an integer.
        ValueError: `model` has no sparse layer.
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
    updater = get_updater(model, caller="update_masks")
    updater.attach()
    return updater.update(int(value))
