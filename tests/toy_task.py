"""A tiny task for tests that train through the shared runner many times
(killed and resumed runs): a small MLP on shuffled random regression data,
so a resumed run that saw another order of examples ends with other
weights.

Run as a program it is `tf-sparsity train --task toy ...`, killed with
SIGKILL at a chosen moment when asked:

```
python -m tests.toy_task --kill_at step:6 -- --model_dir DIR --deterministic
```

`--kill_at` takes `step:N` (right before training step N), `backup:E`
(while the backup of Keras epoch E is being written: half its weights file
is on disk) or `row` (after training, evaluation and saving the model,
before the result row).
"""

import argparse
import dataclasses
import os
import signal
import sys

import numpy as np

from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib

NAME = "toy"
FEATURES, OUTPUTS, EXAMPLES = 8, 4, 256


@dataclasses.dataclass(frozen=True)
class ToyConfig(config_lib.RunConfig):
    task: str = config_lib.field(NAME, "the task")
    units: int = config_lib.field(32, "hidden units", minimum=1)
    steps: int = config_lib.field(12, "training steps", minimum=1)
    batch_size: int = config_lib.field(16, "global batch size", minimum=1)
    eval_batch_size: int = config_lib.field(16, "global evaluation batch size", minimum=1)
    checkpoint_every: int = config_lib.field(4, "steps between backups", minimum=1)
    jit_compile: bool = config_lib.field(False, "XLA")
    export: bool = config_lib.field(False, "write the SavedModel")


class _Data:
    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(EXAMPLES, FEATURES)).astype("float32")
        self.y = np.tanh(self.x @ rng.normal(size=(FEATURES, OUTPUTS))).astype("float32")
        self.info = type("Info", (), {"name": "toy_regression", "train_examples": EXAMPLES})()


class ToyTask(task_lib.Task):
    name = NAME
    config_class = ToyConfig
    main_metric = "mae"

    def load_data(self, config, model_dir):
        return _Data(config.seed)

    def build_model(self, config, data):
        import keras

        return keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(config.units, activation="relu", name="hidden1"),
                keras.layers.Dense(config.units, activation="relu", name="hidden2"),
                keras.layers.Dense(OUTPUTS, name="out"),
            ]
        )

    def compile(self, model, config, data):
        import keras

        model.compile(
            keras.optimizers.Adam(1e-2), "mse", metrics=["mae"], jit_compile=config.jit_compile
        )

    def train_dataset(self, strategy, config, data, resumed_epoch):
        import tensorflow as tf

        from tf_sparsity_models.common import tfds_data

        shuffle_seed, skip_steps = task_lib.resumed_data(config, resumed_epoch)

        def dataset_fn(input_context=None):
            batch = tfds_data.per_replica_batch(input_context, config.batch_size)
            dataset = tf.data.Dataset.from_tensor_slices((data.x, data.y))
            if input_context is not None and input_context.num_input_pipelines > 1:
                dataset = dataset.shard(
                    input_context.num_input_pipelines, input_context.input_pipeline_id
                )
            dataset = dataset.shuffle(EXAMPLES, seed=shuffle_seed).repeat()
            dataset = dataset.batch(batch, drop_remainder=True)
            return tfds_data.skip_steps(dataset, input_context, skip_steps)

        return strategy.distribute_datasets_from_function(dataset_fn)

    def eval_dataset(self, strategy, config, data):
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((data.x[:64], data.y[:64]))
        return strategy.experimental_distribute_dataset(dataset.batch(config.eval_batch_size)), 4

    def metrics(self, results):
        return {"mae": results.get("mae"), "eval_loss": results.get("loss")}


TASK = ToyTask()


def _kill():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(kill_at):
    """Makes the run kill its own process at `kill_at` (see module doc)."""
    import keras

    from tf_sparsity_models.common import backup as backup_lib
    from tf_sparsity_models.common import runner
    from tf_sparsity_models.reporting import rows as rows_lib

    what, _, value = kill_at.partition(":")
    if what == "step":
        step = int(value)

        class KillAtStep(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if int(self.model.optimizer.iterations.numpy()) == step:
                    _kill()

        callbacks = runner._callbacks
        runner._callbacks = lambda *args, **kwargs: [*callbacks(*args, **kwargs), KillAtStep()]
    elif what == "backup":
        name = f"epoch-{int(value):06d}"
        save = backup_lib._save_weights

        def save_then_die(model, path):
            save(model, path)
            if name in os.path.basename(path):
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                _kill()

        backup_lib._save_weights = save_then_die
    elif what == "row":
        rows_lib.write_row = lambda *args, **kwargs: _kill()
    else:
        raise ValueError(f"--kill_at {kill_at!r}: expected step:N, backup:E or row")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill_at")
    parser.add_argument("train_args", nargs="*")
    args = parser.parse_args(argv)
    task_lib.register(TASK)
    if args.kill_at:
        _arm(args.kill_at)
    from tf_sparsity_models import cli

    return cli.main(["train", "--task", NAME, *args.train_args])


if __name__ == "__main__":
    sys.exit(main())
