"""`SparsityCallback`: mask updates and sparsity logging during `model.fit`."""

import os
import warnings

import keras
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import optimizer_state
from tf_sparsity import summary as summary_lib
from tf_sparsity import updater as updater_lib


def _sync_training_state(callback):
    """Makes the model's variables hold the trainer's current state.

    The JAX trainer keeps state outside the variables during `fit`; reading
    `callback.model` copies it back and makes the next step re-read the
    variables, so mask assignments take effect. Done only on update steps,
    since each sync costs a copy.
    """
    return callback.model


class SparsityCallback(keras.callbacks.Callback):
    """Updates masks on schedule and logs sparsity while `model.fit` runs.

    Before each training step the callback asks the schedule whether masks
    are due (plain Python arithmetic on the step); only then does it run the
    compiled mask update. The step is `model.optimizer.iterations`, read at
    the start of each epoch, so resumed runs (checkpoints, `BackupAndRestore`)
    continue the same schedule. With `steps_per_execution=N` an update that
    falls inside a group of N steps is applied at the start of the next group.

    Global sparsity is added to the epoch logs as `sparsity` (shown by the
    progress bar and written by `TensorBoard`/`CSVLogger` callbacks placed
    after this one), and the current target as `target_sparsity`. The
    callback has no batch-end hook, so `fit` keeps dispatching callbacks
    asynchronously.

    At the start of `fit` the optimizer is built, if Keras has not built it
    yet (see `optimizer_state.build_before_training`): on TensorFlow the
    first training step is then traced once instead of twice.

    At the start of `fit`, when Keras knows the number of steps (epochs x
    steps per epoch), a schedule that would end after the last of them
    gets a warning saying what the run reaches instead (e.g. 7% of a 50%
    target).

    Args:
        log_dir: if set, TensorBoard scalars (per-layer and global sparsity,
            current target) are written to `log_dir/sparsity` at every mask
            update and at the end of every epoch (needs TensorFlow).
    """

    def __init__(self, log_dir=None):
        super().__init__()
        if log_dir is not None:
            _backend.require_tensorflow("SparsityCallback(log_dir=...)")
            log_dir = os.fspath(log_dir)
            if os.path.exists(log_dir) and not os.path.isdir(log_dir):
                raise ValueError(
                    f"SparsityCallback: log_dir '{log_dir}' is a file, not a "
                    "directory."
                )
        self.log_dir = log_dir
        self._updater = None
        self._writer = None
        self._epoch_start = None
        self._last_checked = None
        self._report = None
        self._logged = {}

    def on_train_begin(self, logs=None):
        optimizer_state.build_before_training(self.model)
        self._updater = updater_lib.get_updater(self.model, caller="SparsityCallback")
        self._updater.attach(refresh=True)
        self._warn_if_schedule_outlasts_fit()
        self._epoch_start = None
        self._last_checked = None
        self._report = None  # Masks may have changed since the last fit.
        if self.log_dir is not None and self._writer is None:
            tf = _backend.require_tensorflow("TensorBoard summaries")
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "sparsity")
            )

    def _warn_if_schedule_outlasts_fit(self):
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        if not epochs or not steps:
            return  # A dataset of unknown length: the number of steps is unknown.
        # Counted from the optimizer's step, so a second `fit` continues
        # where the first ended; a resumed run (`initial_epoch`) then looks
        # longer than it is, which can only hide a warning, never add one.
        first = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        last = first + epochs * steps - 1
        unfinished = self._updater.unfinished_schedules(last)
        if unfinished:
            warnings.warn(
                f"SparsityCallback: this fit's last step is {last} ({epochs} "
                f"epoch{'s' if epochs != 1 else ''} x {steps} steps from step "
                f"{first}), but "
                f"{'; '.join(unfinished)}. Train for more steps, or end the "
                "schedule within the run (`end_step`).",
                UserWarning,
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        # One read per epoch (after BackupAndRestore or a checkpoint restored
        # it); within the epoch the step is this plus the batch index, so no
        # per-step host sync is needed and no batch-end hook is defined,
        # which keeps Keras's asynchronous callback dispatch on.
        self._epoch_start = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        if self._last_checked is None:
            self._last_checked = self._epoch_start - 1

    def step_of(self, batch):
        """The training step of batch `batch` of the current epoch (a
        subclass driven by a hand-written loop may read it elsewhere)."""
        return self._epoch_start + batch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.step_of(batch)
        updated = self._updater.update(
            step, self._last_checked, before_update=lambda: _sync_training_state(self)
        )
        if updated:
            self._log(step, masks_changed=True)
        self._last_checked = step

    def on_epoch_end(self, epoch, logs=None):
        step = self._last_checked + 1 if self._last_checked is not None else 0
        self._log(step)
        if logs is not None:
            logs.update(self._logged)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def current_target(self, step):
        """The schedule's global target at `step` (first scheduled method)."""
        for group in self._updater.groups if self._updater else ():
            schedule = group.method.step_schedule
            if hasattr(schedule, "sparsity"):
                return schedule.sparsity(step)
        return None

    def _log(self, step, masks_changed=False):
        # Masks change only at updates, so between them the last report
        # stands (reading every kernel back is the costly part); learned
        # sparsity (VD, L0) changes every step.
        if masks_changed or self._report is None or self._updater.has_learned_sparsity:
            self._report = summary_lib.sparsity_summary(self.model, print_fn=None)
        report = self._report
        target = self.current_target(step)
        self._logged = {"sparsity": report.global_sparsity}
        if target is not None:
            self._logged["target_sparsity"] = target
        if self._writer is None:
            return
        tf = _backend.require_tensorflow("TensorBoard summaries")
        with self._writer.as_default(step=step):
            tf.summary.scalar("sparsity/global", report.global_sparsity)
            if target is not None:
                tf.summary.scalar("sparsity/target", target)
            for row in report.layers:
                tf.summary.scalar(f"sparsity/{row.path}/{row.kernel}", row.sparsity)
