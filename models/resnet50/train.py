"""Training, evaluating and exporting one ResNet-50 run.

`run(config, model_dir)` does everything `tf-sparsity train --task resnet50`
does. The model directory holds:

- `result.json`: the run's result row (written last: a run is finished when
  it exists), read by `tf-sparsity report`;
- `backup/`: `keras.callbacks.BackupAndRestore` state, written every
  `checkpoint_every` steps and deleted when training ends; a run restarted
  with the same directory resumes from it;
- `logs/`: TensorBoard (loss, top-1/top-5, learning rate, and per-layer
  sparsity under `logs/sparsity`);
- `model.keras`: the trained sparse model (`tfs.load` reads it);
- `export/1/`: the stripped SavedModel for TF Serving (see `export.py`);
- `workers/`: in multi-worker runs, the other workers' backups and logs.
"""

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf
from keras import ops

import tf_sparsity as tfs
from tf_sparsity.reporting import rows as rows_lib
from tf_sparsity_models import distribute
from tf_sparsity_models.resnet50 import configs
from tf_sparsity_models.resnet50 import data as data_lib
from tf_sparsity_models.resnet50 import export as export_lib
from tf_sparsity_models.resnet50 import lr_schedule
from tf_sparsity_models.resnet50 import model as model_lib

RESULT_FILENAME = rows_lib.RESULT_FILENAME
BACKUP_DIRNAME = "backup"
LOGS_DIRNAME = "logs"
MODEL_FILENAME = "model.keras"
EXPORT_DIRNAME = os.path.join("export", "1")


@dataclasses.dataclass
class TrainResult:
    """What `run` returns.

    Attributes:
        row: the result row (also written to `model_dir/result.json` by the
            chief).
        model: the trained (sparse) Keras model.
        is_chief: whether this process wrote the shared outputs.
    """

    row: dict
    model: object
    is_chief: bool = True


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


def build_model(config, num_classes, train_examples=None):
    """The ResNet of `config`, sparsified with its method.

    Call inside the strategy's scope.

    Args:
        config: a resolved `TrainConfig`.
        num_classes: classifier outputs.
        train_examples: size of the training set (see `make_method`).

    Returns:
        The (sparse) uncompiled model.
    """
    model = model_lib.resnet50(
        num_classes=num_classes,
        image_size=config.image_size,
        blocks=config.blocks,
        base_width=config.base_width,
        weight_decay=config.weight_decay,
    )
    if config.method == configs.DENSE:
        return model
    distribution = model_lib.sparsity_distribution(
        dense_first_conv=config.dense_first_conv,
        last_layer_sparsity=config.last_layer_sparsity,
    )
    method = make_method(config, train_examples)
    return tfs.sparsify(model, method, distribution=distribution)


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
    args.setdefault("seed", config.seed)
    return tfs.make_method(
        config.method, config.sparsity, config.steps, num_examples=train_examples, **args
    )


def compile_model(model, config, train_examples):
    """Compiles with the paper's optimizer, loss and metrics.

    Nesterov momentum on the warm-up + step-decay learning rate (epochs
    counted over `train_examples`), cross-entropy with label smoothing on
    one-hot labels, top-1 and top-5 accuracy.
    """
    schedule = lr_schedule.WarmupPiecewiseDecay(
        peak_learning_rate=config.learning_rate,
        steps_per_epoch=train_examples / config.batch_size,
        warmup_epochs=config.warmup_epochs,
        decay_epochs=config.decay_epochs,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=schedule, momentum=config.momentum, nesterov=True
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="top1"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )


def run(config, model_dir, callbacks=(), verbose=2, print_fn=print):
    """Trains, evaluates and exports one run; writes `model_dir/result.json`.

    A run restarted with the same `model_dir` resumes from its last backup.

    Args:
        config: a resolved `TrainConfig` (see `configs.make_config`).
        model_dir: output directory (see the module doc).
        callbacks: extra Keras callbacks, run after the built-in ones.
        verbose: Keras verbosity (2: one line per Keras epoch).
        print_fn: where the sparsity table and progress notes go.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: a bad value, a missing dataset, or no TPU/cluster.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "tf-sparsity train needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow), not {keras.backend.backend()!r}"
        )
    # First: MultiWorkerMirroredStrategy must come before any other op.
    strategy = distribute.make_strategy(config.strategy, config.tpu)
    previous_policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        return _train(strategy, config, model_dir, callbacks, verbose, print_fn)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(strategy, config, model_dir, extra_callbacks, verbose, print_fn):
    chief = distribute.is_chief(strategy)
    own_dir = distribute.worker_dir(model_dir, strategy)
    replicas = strategy.num_replicas_in_sync
    for name in ("batch_size", "eval_batch_size"):
        if getattr(config, name) % replicas:
            raise ValueError(
                f"{name} {getattr(config, name)} does not split evenly over "
                f"{replicas} replicas"
            )
    dataset = data_lib.load(
        config.dataset,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        eval_split=config.eval_split,
        synthetic=config.synthetic_data,
        num_classes=config.num_classes,
        seed=config.seed,
    )
    info = dataset.info
    backup_dir = os.path.join(own_dir, BACKUP_DIRNAME)
    logs_dir = os.path.join(own_dir, LOGS_DIRNAME)
    resumed_epoch = restored_epoch(backup_dir)
    if resumed_epoch and chief:
        print_fn(f"Resuming from {backup_dir} (Keras epoch {resumed_epoch})")

    train_examples = (
        config.train_examples
        or info.train_examples
        or data_lib.IMAGENET_TRAIN_EXAMPLES
    )
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, info.num_classes, train_examples)
        compile_model(model, config, train_examples)

    # A resumed run reshuffles with a new seed rather than replaying the
    # examples it saw first (tf.data positions are not checkpointed).
    train_data = strategy.distribute_datasets_from_function(
        dataset.train_dataset_fn(
            config.batch_size,
            config.image_size,
            shuffle_seed=config.seed + resumed_epoch,
            shuffle_buffer=config.shuffle_buffer,
        )
    )
    eval_data, eval_steps = _eval_data(strategy, dataset, config)

    callbacks = _callbacks(config, backup_dir, logs_dir) + list(extra_callbacks)
    validation = {}
    if config.validation_freq and eval_data is not None:
        validation = dict(
            validation_data=eval_data,
            validation_steps=eval_steps,
            validation_freq=config.validation_freq,
        )
    start = time.time()
    model.fit(
        train_data,
        epochs=math.ceil(config.steps / config.checkpoint_every),
        steps_per_epoch=config.checkpoint_every,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # The pipeline shuffles.
        **validation,
    )
    wall_time = time.time() - start

    metrics = {}
    if eval_data is not None:
        metrics = model.evaluate(
            eval_data, steps=eval_steps, return_dict=True, verbose=verbose
        )
    report = tfs.sparsity_summary(model, print_fn=print_fn if chief else None)
    row = result_row(config, model, report, metrics, wall_time, info.name, replicas)
    if chief:
        _write_outputs(model, row, config, model_dir, print_fn)
    return TrainResult(row=row, model=model, is_chief=chief)


def _callbacks(config, backup_dir, logs_dir):
    callbacks = [
        # Keras restores only the epoch number, so an epoch is exactly the
        # interval between backups: a backup taken mid-epoch would make the
        # resumed run repeat that epoch's steps.
        keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch"),
        StopAtStep(config.steps, config.checkpoint_every),
    ]
    if config.method != configs.DENSE:
        # Before TensorBoard, which then also writes the `sparsity` log.
        callbacks.append(tfs.SparsityCallback(log_dir=logs_dir))
    callbacks.append(keras.callbacks.TensorBoard(log_dir=logs_dir, write_graph=False))
    return callbacks


def result_row(config, model, report, metrics, wall_time, dataset, replicas):
    """The run's result row (`tf_sparsity.reporting.rows.make_row`).

    Args:
        config: the run's `TrainConfig`.
        model: the trained model.
        report: its `tfs.sparsity_summary`.
        metrics: the evaluation's `{"top1", "top5", "loss"}` (may be empty).
        wall_time: seconds this process spent in `fit`.
        dataset: the dataset's name.
        replicas: replicas in sync.

    Returns:
        A JSON-friendly dict; `top1` and `top5` are fractions (None without
        evaluation), `steps` counts optimizer steps, `main_metric` is "top1".
    """
    return rows_lib.make_row(
        task=config.task,
        method=config.method,
        target_sparsity=config.sparsity,
        global_sparsity=report.global_sparsity,
        steps=int(ops.convert_to_numpy(model.optimizer.iterations)),
        wall_time_s=wall_time,
        main_metric="top1",
        metrics={
            "top1": metrics.get("top1"),
            "top5": metrics.get("top5"),
            "eval_loss": metrics.get("loss"),
        },
        seed=config.seed,
        dataset=dataset,
        num_replicas=replicas,
        hparams=config.to_dict(),
        method_config=_method_config(model),
        layers=report.as_dict()["layers"],
        versions={
            "tf_sparsity": tfs.__version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
    )


def _eval_data(strategy, dataset, config):
    """The distributed evaluation data and its number of steps.

    Returns `(None, None)` when `eval_steps` is 0.
    """
    if config.eval_steps == 0:
        return None, None
    steps = config.eval_steps
    multi_worker = config.strategy == "multi_worker"
    if config.synthetic_data:
        steps = steps or 1
    elif multi_worker and steps is None:
        # Workers evaluate in lockstep: give all the same number of steps
        # over repeated shards, so none runs out of data first.
        if not dataset.info.eval_examples:
            raise ValueError(
                "the evaluation split's size is unknown: pass --eval_steps "
                "for multi-worker runs"
            )
        steps = max(dataset.info.eval_examples // config.eval_batch_size, 1)
    eval_fn = dataset.eval_dataset_fn(
        config.eval_batch_size,
        config.image_size,
        drop_remainder=config.strategy == "tpu",
        repeat=multi_worker,
    )
    return strategy.distribute_datasets_from_function(eval_fn), steps


def _write_outputs(model, row, config, model_dir, print_fn):
    # gfile: model_dir may be a gs:// bucket (as on Cloud TPU).
    tf.io.gfile.makedirs(model_dir)
    tfs.save(model, os.path.join(model_dir, MODEL_FILENAME))
    if config.export:
        export_dir = os.path.join(model_dir, EXPORT_DIRNAME)
        export_lib.export_for_serving(model, export_dir, config.image_size)
        print_fn(f"SavedModel for TF Serving written to {export_dir}")
    # Written last, whole: a run is finished when its result row exists.
    path = rows_lib.write_row(model_dir, row)
    top1 = "n/a" if row["top1"] is None else f"{row['top1']:.4f}"
    print_fn(
        f"{config.method} at {row['global_sparsity']:.2%} global sparsity: "
        f"top-1 {top1} after {row['steps']} steps; result row in {path}"
    )


def restored_epoch(backup_dir):
    """The Keras epoch `BackupAndRestore` will resume from (0 if none).

    Reads the callback's own `training_metadata.json`.
    """
    path = os.path.join(backup_dir, "training_metadata.json")
    try:
        with tf.io.gfile.GFile(path) as f:
            return int(json.loads(f.read()).get("epoch", 0))
    except (tf.errors.NotFoundError, ValueError):
        return 0


def _method_config(model):
    wrappers = tfs.sparse_layers(model)
    if not wrappers:
        return None
    _, wrapper = wrappers[0]
    return keras.saving.serialize_keras_object(wrapper.method)
