"""The task framework: a task of one's own through the registry and the
shared runner, the CLI's error boundary, and the core's import layering."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from tf_sparsity_models import cli
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib
from tests import forked

pytestmark = pytest.mark.tensorflow


@dataclasses.dataclass(frozen=True)
class ToyConfig(config_lib.RunConfig):
    task: str = config_lib.field("toy", "the task")
    units: int = config_lib.field(8, "hidden units of the toy model", minimum=1)
    steps: int = config_lib.field(12, "training steps", minimum=1)
    batch_size: int = config_lib.field(8, "global batch size", minimum=1)
    eval_batch_size: int = config_lib.field(8, "global evaluation batch size", minimum=1)
    checkpoint_every: int = config_lib.field(4, "steps between backups", minimum=1)
    jit_compile: bool = config_lib.field(False, "XLA")
    export: bool = config_lib.field(False, "write the SavedModel")


class _Data:
    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(64, 6)).astype("float32")
        self.y = (self.x @ rng.normal(size=(6, 2))).astype("float32")
        self.info = type("Info", (), {"name": "toy_regression", "train_examples": 64})()


class ToyTask(task_lib.Task):
    name = "toy"
    config_class = ToyConfig
    presets = {"small": {"units": 4}}
    main_metric = "mae"
    fail_in_metrics = False

    def load_data(self, config, model_dir):
        return _Data(config.seed)

    def build_model(self, config, data):
        return keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(config.units, activation="relu", name="hidden"),
             keras.layers.Dense(2, name="out")]
        )

    def compile(self, model, config, data):
        model.compile(keras.optimizers.Adam(1e-2), "mse", metrics=["mae"], jit_compile=config.jit_compile)

    def train_dataset(self, strategy, config, data, resumed_epoch):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((data.x, data.y)).repeat().batch(config.batch_size)

    def eval_dataset(self, strategy, config, data):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((data.x, data.y)).batch(config.eval_batch_size), 2

    def metrics(self, results):
        if self.fail_in_metrics:
            raise ValueError("a bug inside the run, not bad input")
        return {"mae": results.get("mae")}


@pytest.fixture
def toy_task():
    task = task_lib.register(ToyTask())
    yield task
    task_lib._REGISTERED.pop("toy", None)


def test_a_registered_task_trains_to_a_result_row(toy_task, tmp_path):
    model_dir = tmp_path / "run"
    code = cli.main(
        ["train", "--task", "toy", "--config", "small", "--method", "magnitude",
         "--sparsity", "0.5", "--model_dir", str(model_dir), "--verbose", "0"]
    )
    assert code == 0
    row = json.loads((model_dir / "result.json").read_text())
    assert row["task"] == "toy" and row["main_metric"] == "mae"
    assert row["mae"] is not None and row["steps"] == 12
    assert row["global_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert row["hparams"]["units"] == 4


def test_help_shows_the_tasks_own_fields(toy_task, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "toy", "--help"])
    out = capsys.readouterr().out
    assert "--units" in out and "--image_size" not in out


def test_declared_bounds_are_checked_in_one_loop(toy_task, capsys):
    code = cli.main(["train", "--task", "toy", "--units", "0", "--model_dir", "unused"])
    assert code == 2
    assert "units must be at least 1" in capsys.readouterr().err


def test_unknown_task_and_method_are_bad_input(toy_task, capsys):
    assert cli.main(["train", "--task", "nope", "--model_dir", "x"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--task", "toy", "--method", "magnitud", "--model_dir", "x"]) == 2
    assert "magnitud" in capsys.readouterr().err


def test_a_bug_during_training_is_a_traceback_not_bad_input(toy_task, tmp_path):
    toy_task.fail_in_metrics = True
    with pytest.raises(ValueError, match="a bug inside the run"):
        cli.main(["train", "--task", "toy", "--model_dir", str(tmp_path / "run"), "--verbose", "0"])


def test_every_library_method_is_a_train_method():
    import tf_sparsity as tfs

    assert set(config_lib.method_names()) == {"dense", *tfs.METHODS}


FIRST_IMPORTS = [
    "tf_sparsity.methods.variational_dropout", "tf_sparsity.sparsify", "tf_sparsity.updater",
    "tf_sparsity.methods.updates", "tf_sparsity.strip",
]


@pytest.fixture(scope="module")
def first_imports():
    """`{module: result}` of importing each module first, each in a child
    forked before any tf_sparsity module is imported (`tests/forked.py`):
    one interpreter start for all of them."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return dict(zip(FIRST_IMPORTS, forked.run_forked([f"import {name}" for name in FIRST_IMPORTS], env=env)))


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_any_module_imports_first_in_a_fresh_process(module, first_imports):
    result = first_imports[module]
    assert result["code"] == 0, result["output"][-2000:]
