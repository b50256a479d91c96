"""Training, evaluating and exporting one run of any task.

`run(config, model_dir)` does everything `tf-sparsity train` does. The model
directory holds:

- `result.json`: the run's result row (written last: a run is finished when
  it exists), read by `tf-sparsity report`;
- `backup/`: the training state (weights, optimizer, epoch), written every
  `checkpoint_every` steps without ever replacing the last good backup in
  place (`backup.py`), and deleted once the result row is written; a run
  restarted with the same directory resumes from its newest intact backup;
- `logs/`: TensorBoard (loss, metrics, learning rate, and per-layer sparsity
  under `logs/sparsity`);
- `model.keras`: the trained sparse model (`tfs.load` reads it);
- `export/1/`: the SavedModel for TF Serving (the task's `export`);
- `init.weights.h5`, `rewind_<K>.weights.h5` and `masks.npz` (pruning runs):
  the weights at step 0 (and at `--rewind_step`) and the final masks, which
  seed the lottery and scratch variants of another run (`--mask_from`);
- `workers/`: in multi-worker runs, the other workers' backups and logs.

A finished run (one with `result.json`) is never trained again: the same
settings return its row, other settings are an error, unless `overwrite`
replaces it. With `deterministic` (`--deterministic`), a run gives the same
masks, weights and row (timings aside) every time, whether it ran in one go
or was killed and resumed any number of times.
"""

import dataclasses
import json
import math
import os
import time
import warnings

import keras
import tensorflow as tf
from keras import ops

import tf_sparsity as tfs
from tf_sparsity import optimizer_state
from tf_sparsity import structures
from tf_sparsity import updater as updater_lib
from tf_sparsity_models.reporting import rows as rows_lib
from tf_sparsity_models.common import backup as backup_lib
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import determinism
from tf_sparsity_models.common import distribute
from tf_sparsity_models.common import task as task_lib

RESULT_FILENAME = rows_lib.RESULT_FILENAME
BACKUP_DIRNAME = "backup"
LOGS_DIRNAME = "logs"
MODEL_FILENAME = "model.keras"
EXPORT_DIRNAME = os.path.join("export", "1")
INIT_WEIGHTS = "init.weights.h5"
MASKS_FILENAME = "masks.npz"
# What runs of earlier versions left in backup/ (Keras's own callback).
KERAS_BACKUP = "latest.weights.h5"


def rewind_weights(step):
    return f"rewind_{step}.weights.h5"


@dataclasses.dataclass
class TrainResult:
    """What `run` returns.

    Attributes:
        row: the result row (also written to `model_dir/result.json` by the
            chief).
        model: the trained (sparse) Keras model; None when the run had
            finished before (`tfs.load(model_dir/model.keras)` loads it).
        is_chief: whether this process wrote the shared outputs.
        already_finished: whether `model_dir` held this run, finished, so
            nothing was trained.
    """

    row: dict
    model: object
    is_chief: bool = True
    already_finished: bool = False


class ScheduleNotFinishedWarning(UserWarning):
    """Training ends before the sparsity schedule (or penalty ramp) does."""


class SaveWeightsAt(keras.callbacks.Callback):
    """Saves the model's weights right before training step `step`.

    Args:
        step: the optimizer step.
        path: the `.weights.h5` file to write.
    """

    def __init__(self, step, path):
        super().__init__()
        self.step, self.path = step, path
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch_start + batch == self.step:
            backup_lib.save_weights_atomically(self.model, self.path)


class StopAtStep(keras.callbacks.Callback):
    """Ends training after `steps` steps when they are not a whole number of
    Keras epochs (the last epoch is cut short).

    Args:
        steps: total training steps.
        steps_per_epoch: steps of each Keras epoch.
    """

    def __init__(self, steps, steps_per_epoch):
        super().__init__()
        self.last_epoch, self.last_epoch_steps = divmod(steps, steps_per_epoch)
        self._in_last_epoch = False

    def on_epoch_begin(self, epoch, logs=None):
        self._in_last_epoch = epoch == self.last_epoch

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index in the epoch of the step just run.
        if self._in_last_epoch and batch + 1 >= self.last_epoch_steps:
            self.model.stop_training = True


def make_method(config, train_examples=None):
    """The sparsity method of `config`: `tfs.make_method` with the run's
    schedule (`begin_step`, `end_step`, `frequency`), seed, training-set
    size and `method_args`.

    Raises:
        ValueError: the method is not in this tf_sparsity, or rejects an
            argument.
    """
    args = {
        name: getattr(config, name)
        for name in ("begin_step", "end_step", "frequency")
        if getattr(config, name) is not None
    }
    args.update(config.method_args or {})
    if config.structure is not None:
        args["structure"] = structures.parse(config.structure)
    args.setdefault("seed", config.seed)
    return tfs.make_method(
        config.method, config.sparsity, config.steps, num_examples=train_examples, **args
    )


def _keeps_masks(model):
    wrappers = tfs.sparse_layers(model)
    return bool(wrappers) and all(isinstance(w.method, tfs.MaskedMethod) for _, w in wrappers)


def prepare_variant(model, config):
    """Puts the learned masks (and, for the lottery, the source run's
    weights) of `config.mask_from` into a fresh `FixedMask` model.

    - lottery: the source's step-0 weights (or those at `rewind_step`), its
      final masks;
    - scratch_e, scratch_b: this run's fresh weights, the final masks;
    - distribution_only: fresh weights, random masks with each kernel's
      learned sparsity (drawn from the run's seed).

    With `scale_init`, the scratch variants scale each kernel by
    1/sqrt(density), so its output variance matches a dense layer's.
    """
    source = config.mask_from
    masks_path = os.path.join(source, MASKS_FILENAME)
    if config.variant == "lottery":
        name = INIT_WEIGHTS if config.rewind_step is None else rewind_weights(config.rewind_step)
        weights = os.path.join(source, name)
        if not tf.io.gfile.exists(weights):
            raise ValueError(
                f"--mask_from {source} has no {name} (a run saves its weights "
                "at --rewind_step only when it was given that flag)"
            )
        model.load_weights(weights)
    shuffle = config.seed if config.variant == "distribution_only" else None
    tfs.load_masks(model, masks_path, shuffle_seed=shuffle)
    if config.scale_init and config.variant != "lottery":
        for kernel in tfs.sparse_kernels(model):
            mask = ops.convert_to_numpy(kernel.state.mask)
            density = max(float(mask.mean()), 1e-6)
            kernel.variable.assign(ops.convert_to_numpy(kernel.variable) / math.sqrt(density))


def build_sparse_model(task, config, data):
    """The task's model, sparsified with the run's method (in scope)."""
    model = task.build_model(config, data)
    if config.method == config_lib.DENSE:
        return model
    method = make_method(config, data.info.train_examples)
    distribution = task.distribution(config)
    if config.distribution == "erk":
        distribution = tfs.ERK(dense=distribution.dense if distribution is not None else ())
    return tfs.sparsify(model, method, distribution=distribution)


def run(config, model_dir, callbacks=(), verbose=2, print_fn=print, overwrite=False):
    """Trains, evaluates and exports one run; writes `model_dir/result.json`.

    A run restarted with the same `model_dir` resumes from its newest intact
    backup. A finished run is not trained again: with the same config its
    row is returned (`already_finished`), with another one this raises,
    unless `overwrite`. With `config.deterministic`, ops are deterministic
    (from then on, in this process: `determinism.enable`) and a resumed run
    sees the data an uninterrupted one would, so both end bit-identical.

    Args:
        config: a resolved config (`config_lib.make_config`).
        model_dir: output directory (see the module doc).
        callbacks: extra Keras callbacks, run after the built-in ones.
        verbose: Keras verbosity (2: one line per Keras epoch).
        print_fn: where the sparsity table and progress notes go.
        overwrite: replace a finished (or unfinished) run in `model_dir`,
            whatever its settings, instead of returning or resuming it.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: a bad value, a missing dataset, no TPU/cluster, a
            `model_dir` that is a file or holds a run with other settings,
            or one whose backups are all damaged.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "tf-sparsity train needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow), not {keras.backend.backend()!r}"
        )
    task = task_lib.get(config.task)
    # Before any work (and before the strategy, which waits for the other
    # workers): every worker reads the same, shared model_dir.
    state = inspect_model_dir(model_dir, config, overwrite)
    if state.finished_row is not None:
        path = os.path.join(model_dir, RESULT_FILENAME)
        print_fn(f"The run in {model_dir} is complete (same settings); its result row is {path}")
        return TrainResult(
            row=state.finished_row, model=None, is_chief=distribute.is_chief_task(config.strategy),
            already_finished=True,
        )
    # First: MultiWorkerMirroredStrategy must come before any other op.
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    previous_policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        return _train(task, strategy, config, model_dir, state, callbacks, verbose, print_fn)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


@dataclasses.dataclass
class ModelDirState:
    """What `inspect_model_dir` found in a run's directory.

    Attributes:
        finished_row: the row of the same run, finished (None: train).
        restore: the backup to resume from (None: start at step 0).
        notes: lines to print (damaged backups passed over).
        overwrite: whether earlier outputs are to be deleted first.
    """

    finished_row: dict = None
    restore: backup_lib.Backup = None
    notes: tuple = ()
    overwrite: bool = False


def inspect_model_dir(model_dir, config, overwrite=False):
    """Decides how a run starts in `model_dir`: train from step 0, resume
    from a backup, or not at all (finished). Reads only.

    Args:
        model_dir: the run's directory.
        config: the run's resolved config.
        overwrite: whether an earlier run there may be replaced.

    Returns:
        A `ModelDirState`.

    Raises:
        ValueError: `model_dir` is a file; it holds a run (finished, or its
            backups) with other settings and `overwrite` is False; or all
            its backups are damaged.
    """
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise ValueError(f"--model_dir {model_dir} is a file, not a directory")
    if overwrite:
        return ModelDirState(overwrite=True)
    hparams = config.to_dict()
    row_path = os.path.join(model_dir, RESULT_FILENAME)
    if tf.io.gfile.exists(row_path):
        try:
            with tf.io.gfile.GFile(row_path) as f:
                row = json.loads(f.read())
        except ValueError as error:
            raise ValueError(
                f"{row_path} is not a readable result row ({error}): delete it to "
                "train this run again, or pass --overwrite"
            ) from None
        _check_same_run(model_dir, "a finished run", row.get("hparams") or {}, hparams)
        return ModelDirState(finished_row=row)
    backup_dir = os.path.join(model_dir, BACKUP_DIRNAME)
    restore, damaged = backup_lib.scan(backup_dir)
    notes = tuple(
        f"Backup of epoch {d.epoch} in {backup_dir} is damaged ({d.reason}); passed over"
        for d in damaged
    )
    if restore is None and damaged:
        reasons = "; ".join(f"epoch {d.epoch}: {d.reason}" for d in damaged)
        raise ValueError(
            f"{backup_dir} holds no intact backup ({reasons}): "
            f"delete {backup_dir} to train this run from step 0, or pass --overwrite"
        )
    if restore is not None:
        _check_same_run(model_dir, "an unfinished run", restore.hparams, hparams)
    elif tf.io.gfile.exists(os.path.join(backup_dir, KERAS_BACKUP)):
        notes += (
            f"{backup_dir} holds a backup of keras.callbacks.BackupAndRestore ({KERAS_BACKUP}), "
            "which runs of this version do not write or read: training from step 0",
        )
    return ModelDirState(restore=restore, notes=notes)


#: Config fields saying where things are, not what the run is: a run may
#: resume (or be found finished) with other values.
LOCATION_FIELDS = ("data_dir", "manual_dir", "tpu")


def _check_same_run(model_dir, what, theirs, ours):
    # Fields one side lacks came or went with another version: not compared.
    shared = (set(theirs) & set(ours)) - set(LOCATION_FIELDS)
    differ = sorted(name for name in shared if theirs[name] != ours[name])
    if not differ:
        return
    shown = ", ".join(
        f"{name} {theirs.get(name)!r} there, {ours.get(name)!r} here" for name in differ[:4]
    )
    more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
    raise ValueError(
        f"--model_dir {model_dir} holds {what} with other settings ({shown}{more}): "
        "give another --model_dir, or --overwrite to replace it"
    )


def _clear_outputs(task, own_dir, chief):
    """Deletes what an earlier run wrote into this process's directory."""
    if not chief:  # A worker's directory holds only its own files.
        if tf.io.gfile.exists(own_dir):
            tf.io.gfile.rmtree(own_dir)
        return
    names = [RESULT_FILENAME, MODEL_FILENAME, "export", BACKUP_DIRNAME, LOGS_DIRNAME,
             INIT_WEIGHTS, MASKS_FILENAME, *task.outputs]
    if tf.io.gfile.isdir(own_dir):
        names += [n for n in tf.io.gfile.listdir(own_dir) if n.startswith("rewind_")]
    for name in names:
        path = os.path.join(own_dir, name.rstrip("/"))
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def _train(task, strategy, config, model_dir, state, extra_callbacks, verbose, print_fn):
    chief = distribute.is_chief(strategy)
    own_dir = distribute.worker_dir(model_dir, strategy)
    replicas = strategy.num_replicas_in_sync
    for name in ("batch_size", "eval_batch_size"):
        if getattr(config, name) % replicas:
            raise ValueError(
                f"{name} {getattr(config, name)} does not split evenly over "
                f"{replicas} replicas"
            )
    if state.overwrite:
        _clear_outputs(task, own_dir, chief)
    # Seeded first: tf.random.set_seed also drops the TF resources made
    # so far (a tokenizer's op), which the data pipelines need.
    determinism.enable(config.seed, config.deterministic)
    data = task.load_data(config, model_dir)
    backup_dir = os.path.join(own_dir, BACKUP_DIRNAME)
    logs_dir = os.path.join(own_dir, LOGS_DIRNAME)
    # Every worker restores the chief's backup (inspected in model_dir):
    # workers hold the same variables, and so all resume at the same step
    # even when one was killed while writing its own backup.
    restore = state.restore
    resumed_epoch = restore.epoch if restore is not None else 0
    if chief:
        for note in state.notes:
            print_fn(note)
        if restore is not None:
            print_fn(f"Resuming from {restore.weights_path} (Keras epoch {resumed_epoch})")

    with strategy.scope():
        model = build_sparse_model(task, config, data)
        task.compile(model, config, data)
        if not resumed_epoch:  # A resumed run restores all of this.
            if config.variant is not None:
                prepare_variant(model, config)
            elif _keeps_masks(model):
                # Every worker saves (into its own directory): under a
                # multi-worker strategy, reading the variables is a
                # collective step all workers must take together.
                tf.io.gfile.makedirs(own_dir)
                backup_lib.save_weights_atomically(model, os.path.join(own_dir, INIT_WEIGHTS))

    unfinished = unfinished_schedules(model, config.steps)
    if unfinished and chief:
        warnings.warn(
            f"training ends at step {config.steps - 1} (--steps {config.steps}), before "
            f"the schedule: {'; '.join(unfinished)}. The run's row records "
            "schedule_finished: false",
            ScheduleNotFinishedWarning,
            stacklevel=2,
        )

    train_data = task.train_dataset(strategy, config, data, resumed_epoch)
    eval_data, eval_steps = task.eval_dataset(strategy, config, data)

    callbacks = _callbacks(config, backup_dir, logs_dir, restore) + list(extra_callbacks)
    if config.rewind_step is not None and config.variant is None:
        callbacks.append(  # On every worker, as above.
            SaveWeightsAt(config.rewind_step, os.path.join(own_dir, rewind_weights(config.rewind_step)))
        )
    validation = {}
    if config.validation_freq and eval_data is not None:
        validation = dict(
            validation_data=eval_data,
            validation_steps=eval_steps,
            validation_freq=config.validation_freq,
        )
    with strategy.scope():
        # Dense runs too (SparsityCallback does this for sparse ones): built
        # before `fit`, the optimizer is not created inside the first traced
        # step, which TensorFlow would then trace twice.
        optimizer_state.build_before_training(model)
    start = time.time()
    with warnings.catch_warnings():
        # SparsityCallback's own account of the same (warned above, with
        # the run's flags).
        warnings.filterwarnings("ignore", message="SparsityCallback: this fit's last step")
        model.fit(
            train_data,
            epochs=math.ceil(config.steps / config.checkpoint_every),
            initial_epoch=resumed_epoch,
            steps_per_epoch=config.checkpoint_every,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # The pipeline shuffles.
            **validation,
        )
    wall_time = time.time() - start

    results = {}
    if eval_data is not None:
        results = model.evaluate(eval_data, steps=eval_steps, return_dict=True, verbose=verbose)
    results.update(task.evaluate_more(model, config, data, print_fn=print_fn if chief else _quiet))
    report = tfs.sparsity_summary(model, print_fn=print_fn if chief else None)
    row = result_row(task, config, model, report, results, wall_time, data.info.name, replicas)
    if _keeps_masks(model):
        run = {"model_dir": model_dir, "method": row["method"], "target_sparsity": row["target_sparsity"]}
        tfs.save_masks(model, os.path.join(own_dir, MASKS_FILENAME), run=run)
    if chief:
        _write_outputs(task, model, row, config, data, model_dir, print_fn)
    # Kept until the row is written: a run killed while evaluating or
    # exporting resumes after its last step instead of at step 0.
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
    return TrainResult(row=row, model=model, is_chief=chief)


def unfinished_schedules(model, steps):
    """What the model's schedules (sparsity, penalty ramps) still have to do
    after a run of `steps` steps: one line per method whose schedule ends
    after step `steps - 1` (the library's account: end step, and the
    sparsity or penalty reached by then); empty when all finish in time."""
    if not tfs.sparse_layers(model):
        return []
    return updater_lib.get_updater(model).unfinished_schedules(steps - 1)


def _callbacks(config, backup_dir, logs_dir, restore=None):
    callbacks = [
        # Keras restores only the epoch number, so an epoch is exactly the
        # interval between backups: a backup taken mid-epoch would make the
        # resumed run repeat that epoch's steps.
        backup_lib.BackupCallback(backup_dir, config.to_dict(), restore),
        StopAtStep(config.steps, config.checkpoint_every),
    ]
    if config.method != config_lib.DENSE:
        # Before TensorBoard, which then also writes the `sparsity` log.
        callbacks.append(tfs.SparsityCallback(log_dir=logs_dir))
    callbacks.append(keras.callbacks.TensorBoard(log_dir=logs_dir, write_graph=False))
    return callbacks


def result_row(task, config, model, report, results, wall_time, dataset, replicas):
    """The run's result row (`tf_sparsity_models.reporting.rows.make_row`): the
    shared fields, the task's metrics (None where not evaluated),
    `main_metric` naming the task's, and `schedule_finished` (False when
    training ended before the sparsity schedule did; None for dense runs)."""
    schedule_finished = None
    if tfs.sparse_layers(model):
        schedule_finished = not unfinished_schedules(model, config.steps)
    lineage = {}
    if config.variant is not None:
        # Rows of a variant are reported as their own series.
        lineage = dict(variant=config.variant, mask_from=config.mask_from)
    return rows_lib.make_row(
        task=config.task,
        method=config.variant or config.method,
        target_sparsity=config.sparsity,
        global_sparsity=report.global_sparsity,
        steps=int(ops.convert_to_numpy(model.optimizer.iterations)),
        wall_time_s=wall_time,
        main_metric=task.main_metric,
        metrics=task.metrics(results),
        seed=config.seed,
        dataset=dataset,
        num_replicas=replicas,
        hparams=config.to_dict(),
        method_config=_method_config(model),
        schedule_finished=schedule_finished,
        layers=report.as_dict()["layers"],
        versions={
            "tf_sparsity": tfs.__version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
        **task.row_extras(results),
        **lineage,
    )


def _quiet(*args, **kwargs):
    pass


def _write_outputs(task, model, row, config, data, model_dir, print_fn):
    # gfile: model_dir may be a gs:// bucket (as on Cloud TPU).
    tf.io.gfile.makedirs(model_dir)
    tfs.save(model, os.path.join(model_dir, MODEL_FILENAME))
    if config.export:
        export_dir = os.path.join(model_dir, EXPORT_DIRNAME)
        task.export(model, export_dir, config, data)
        print_fn(f"SavedModel for TF Serving written to {export_dir}")
    # Written last, whole: a run is finished when its result row exists.
    path = rows_lib.write_row(model_dir, row)
    value = row.get(task.main_metric)
    shown = "n/a" if value is None else f"{value:.4f}"
    print_fn(
        f"{config.method} at {row['global_sparsity']:.2%} global sparsity: "
        f"{task.main_metric} {shown} after {row['steps']} steps; result row in {path}"
    )


def restored_epoch(backup_dir):
    """The Keras epoch a run restarted on `backup_dir` resumes from: that
    of its newest intact backup (0 if none)."""
    return backup_lib.latest_epoch(backup_dir)


def _method_config(model):
    wrappers = tfs.sparse_layers(model)
    if not wrappers:
        return None
    _, wrapper = wrappers[0]
    return keras.saving.serialize_keras_object(wrapper.method)
