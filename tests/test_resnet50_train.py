"""`tf-sparsity train` runs the tiny ResNet to completion, exports it for
serving, and resumes an interrupted run to the same masks."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tf_sparsity as tfs
from tf_sparsity_models import cli as tfs_cli
from tf_sparsity_models.reporting import rows as rows_lib
from tf_sparsity_models.resnet50 import configs
from tf_sparsity_models.resnet50 import data
from tf_sparsity_models.common import runner as train

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

METHOD, SPARSITY = "magnitude", 0.8
TINY_ARGS = ["--config", "tiny", "--method", METHOD, "--sparsity", str(SPARSITY)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny configuration trained to completion through the CLI."""
    model_dir = tmp_path_factory.mktemp("tiny") / "run"
    argv = ["train", "--task", "resnet50", *TINY_ARGS, "--model_dir", str(model_dir),
            "--verbose", "0"]
    assert tfs_cli.main(argv) == 0
    return model_dir


def masks_of(model):
    return {
        v.path: ops.convert_to_numpy(v) for v in model.weights if v.path.endswith("_mask")
    }


def test_tiny_run_reaches_its_target_and_writes_a_result_row(tiny_run):
    row = json.loads((tiny_run / "result.json").read_text())
    rows_lib.validate_row(row)
    for key in ("task", "method", "target_sparsity", "global_sparsity", "steps",
                "wall_time_s", "top1", "top5", "hparams", "seed", "layers"):
        assert key in row, key
    assert (row["task"], row["method"], row["target_sparsity"]) == ("resnet50", METHOD, SPARSITY)
    assert row["steps"] == 24 and row["seed"] == 0
    # Every kernel is pruned to the target, so the global sparsity is the
    # target up to per-kernel rounding.
    assert row["global_sparsity"] == pytest.approx(SPARSITY, abs=1e-3)
    assert len(row["layers"]) == 18
    assert all(layer["sparsity"] == pytest.approx(SPARSITY, abs=0.01) for layer in row["layers"])
    assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
    assert row["hparams"]["blocks"] == [1, 1, 1, 1] and row["hparams"]["end_step"] == 19
    # The report tool finds exactly this row in the model directory.
    assert len(rows_lib.load_rows([tiny_run])) == 1
    # Outputs: TensorBoard logs with the sparsity scalars, the model, the
    # export; the backup is gone once training ended.
    assert list((tiny_run / "logs" / "sparsity").glob("events.out.tfevents.*"))
    assert list((tiny_run / "logs" / "train").glob("events.out.tfevents.*"))
    assert (tiny_run / "model.keras").is_file()
    assert not (tiny_run / "backup").exists()


def test_export_serves_encoded_images_and_float_batches(tiny_run):
    loaded = tf.saved_model.load(str(tiny_run / "export" / "1"))
    assert set(loaded.signatures) == {"serving_default", "serve_encoded", "serve"}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    encoded = tf.io.encode_jpeg(image, quality=95)
    from_bytes = loaded.signatures["serving_default"](image_bytes=tf.stack([encoded, encoded]))
    preprocessed = data.preprocess_for_eval(encoded, 32, jpeg=True)[None]
    from_floats = loaded.signatures["serve"](images=preprocessed)
    assert from_bytes["logits"].shape == (2, 10)
    np.testing.assert_allclose(from_bytes["logits"][0], from_floats["logits"][0], atol=1e-4)
    np.testing.assert_allclose(tf.reduce_sum(from_bytes["probabilities"], -1), 1.0, atol=1e-5)
    # The export computes what the trained sparse model computes.
    sparse = tfs.load(str(tiny_run / "model.keras"))
    expected = sparse.predict(preprocessed, verbose=0)
    np.testing.assert_allclose(from_floats["logits"], expected, atol=1e-4)


class Preempt(keras.callbacks.Callback):
    """Fails the run after `at_step` steps, like a preempted machine."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_step:
            raise RuntimeError("preempted")


def test_resumed_run_ends_with_the_masks_of_an_uninterrupted_one(tmp_path):
    # Global-scope pruning: the same schedule as the tiny run, but its mask
    # update compiles in seconds (a per-layer one takes ~30 s on a CPU).
    config = configs.make_config(
        "tiny",
        {"method": METHOD, "sparsity": SPARSITY, "export": False,
         "method_args": {"scope": "global"}},
    )
    quiet = dict(verbose=0, print_fn=lambda *args: None)
    reference = train.run(config, str(tmp_path / "uninterrupted"), **quiet)
    # Interrupted mid-epoch, after the backup at step 8 and after pruning
    # began (step 8).
    resumed_dir = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="preempted"):
        train.run(config, str(resumed_dir), callbacks=[Preempt(at_step=13)], **quiet)
    assert train.restored_epoch(str(resumed_dir / "backup")) == 1
    assert not (resumed_dir / "result.json").exists()

    resumed = train.run(config, str(resumed_dir), **quiet)
    assert resumed.row["steps"] == 24
    expected, actual = masks_of(reference.model), masks_of(resumed.model)
    assert sorted(expected) == sorted(actual) and len(expected) == 18
    for path in expected:
        np.testing.assert_array_equal(actual[path], expected[path], err_msg=path)
    assert resumed.row["global_sparsity"] == pytest.approx(SPARSITY, abs=1e-5)
    assert resumed.row["global_sparsity"] == reference.row["global_sparsity"]


def test_units_run_exports_the_shrunk_resnet(tmp_path):
    config = configs.make_config("tiny", {**configs.PRESETS["units_50"], "sparsity": 0.5})
    quiet = dict(verbose=0, print_fn=lambda *args: None)
    result = train.run(config, str(tmp_path / "units"), **quiet)
    sparse = result.model
    loaded = tf.saved_model.load(str(tmp_path / "units" / "export" / "1"))
    served_params = sum(int(np.prod(v.shape)) for v in loaded.variables)
    dense_params = sum(int(np.prod(v.shape)) for v in tfs.strip(sparse).weights)
    # Half of every group's filters: about a quarter of the convolutions'
    # weights remain.
    assert served_params < 0.5 * dense_params
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = ops.convert_to_numpy(sparse(images, training=False))
    np.testing.assert_allclose(
        loaded.serve(tf.constant(images))["logits"].numpy(), expected, atol=1e-4
    )
