"""Runs that survive being killed (issue #20): a deterministic run killed
with SIGKILL at any moment (mid-epoch, while a backup is written, after
training) and restarted with the same command ends with the masks, weights
and result row of an uninterrupted one; damaged backups are passed over; a
finished run is never trained again. On one worker and on two
(`MultiWorkerMirroredStrategy` on localhost, one worker killed).

The runs are `tf-sparsity train` of the small task in `tests/toy_task.py`,
in their own processes, which kill themselves at the chosen moment."""

import io
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import zipfile

import h5py
import keras
import numpy as np
import pytest

from tests import toy_task
from tf_sparsity_models import cli
from tf_sparsity_models.common import backup as backup_lib
from tf_sparsity_models.common import runner
from tf_sparsity_models.common import task as task_lib

pytestmark = pytest.mark.tensorflow

REPO = pathlib.Path(__file__).resolve().parents[1]
# 12 steps, a backup every 4 (Keras epochs 1-3); pruning from step 0 to 9.
RUN_FLAGS = ["--method", "magnitude", "--sparsity", "0.75", "--deterministic", "--verbose", "0"]
KILLED = -9  # Popen's returncode for SIGKILL.
MASKS_METADATA = "__tf_sparsity_masks__"  # Names the run's directory.


def start(model_dir, *flags, kill_at=None, tf_config=None):
    """Starts `tf-sparsity train` of the toy task in a new process."""
    command = [sys.executable, "-m", "tests.toy_task"]
    if kill_at:
        command += ["--kill_at", kill_at]
    command += ["--", "--model_dir", str(model_dir), *RUN_FLAGS, *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process, expected_returncode=0, timeout=300):
    """Waits for `process`; returns its output."""
    output = process.communicate(timeout=timeout)[0]
    assert process.returncode == expected_returncode, output[-4000:]
    return output


def train(model_dir, *flags, kill_at=None, expected_returncode=0):
    return finish(start(model_dir, *flags, kill_at=kill_at), expected_returncode)


def model_weights(model_dir):
    """Every array of the saved model (weights, masks, optimizer state)."""
    with zipfile.ZipFile(model_dir / runner.MODEL_FILENAME) as archive:
        content = archive.read("model.weights.h5")
    arrays = {}

    def collect(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with h5py.File(io.BytesIO(content), "r") as f:
        f.visititems(collect)
    return arrays


def assert_same_outputs(actual_dir, expected_dir):
    """Bit-identical weights, masks and row (wall time aside)."""
    expected, actual = model_weights(expected_dir), model_weights(actual_dir)
    assert sorted(actual) == sorted(expected) and len(expected) > 10
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    expected_masks = np.load(expected_dir / runner.MASKS_FILENAME)
    actual_masks = np.load(actual_dir / runner.MASKS_FILENAME)
    assert sorted(actual_masks.files) == sorted(expected_masks.files)
    for name in expected_masks.files:
        if name != MASKS_METADATA:
            np.testing.assert_array_equal(actual_masks[name], expected_masks[name], err_msg=name)
    rows = [json.loads((d / runner.RESULT_FILENAME).read_text()) for d in (expected_dir, actual_dir)]
    for row in rows:
        del row["wall_time_s"]
    assert rows[0] == rows[1]
    assert rows[0]["steps"] == 12 and rows[0]["global_sparsity"] == pytest.approx(0.75, abs=0.01)


def backup_epochs(backup_dir):
    """`{epoch: complete}` of the backup files in `backup_dir`."""
    names = os.listdir(backup_dir)
    epochs = {int(name[6:12]) for name in names if name.startswith("epoch-")}
    return {epoch: f"epoch-{epoch:06d}.json" in names for epoch in sorted(epochs)}


@pytest.mark.slow
def test_a_run_killed_at_any_moment_ends_as_an_uninterrupted_one(tmp_path):
    expected_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = start(expected_dir)  # Alongside the killed runs.

    # Killed while writing the backup of epoch 2: half its weights are on
    # disk under a temporary name; epoch 1's backup is intact.
    train(killed_dir, kill_at="backup:2", expected_returncode=KILLED)
    backup_dir = killed_dir / runner.BACKUP_DIRNAME
    assert backup_epochs(backup_dir) == {1: True, 2: False}
    assert runner.restored_epoch(str(backup_dir)) == 1

    # Resumed from epoch 1, killed mid-epoch 3 (step 10), after a new backup
    # of epoch 2.
    output = train(killed_dir, kill_at="step:10", expected_returncode=KILLED)
    assert "Resuming from" in output and "(Keras epoch 1)" in output
    assert backup_epochs(backup_dir) == {1: True, 2: True}

    # The newest backup damaged (a disk fault, a copy cut short): the next
    # start falls back to epoch 1 and says so. Killed after training and
    # evaluation, before the result row.
    damaged = backup_dir / "epoch-000002.weights.h5"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    output = train(killed_dir, kill_at="row", expected_returncode=KILLED)
    assert f"Backup of epoch 2 in {backup_dir} is damaged" in output
    assert "(Keras epoch 1)" in output
    assert not (killed_dir / runner.RESULT_FILENAME).exists()
    assert backup_epochs(backup_dir) == {2: True, 3: True}

    # Resumed after its last step: it trains no more, evaluates and saves.
    output = train(killed_dir)
    assert "(Keras epoch 3)" in output
    assert not backup_dir.exists()  # Deleted once the row is written.

    finish(reference)
    assert_same_outputs(killed_dir, expected_dir)


@pytest.fixture
def toy():
    task = task_lib.register(toy_task.ToyTask())
    yield task
    task_lib._REGISTERED.pop(task.name, None)


def toy_argv(model_dir, *flags):
    # Not deterministic: TensorFlow's op determinism cannot be turned off
    # in this process again.
    return ["train", "--task", "toy", "--model_dir", str(model_dir), "--verbose", "0",
            "--steps", "4", *RUN_FLAGS[:4], *flags]


def test_a_finished_run_is_not_trained_again(toy, tmp_path, capsys):
    model_dir = tmp_path / "run"
    assert cli.main(toy_argv(model_dir)) == 0
    row_path = model_dir / runner.RESULT_FILENAME
    row, model_stat = row_path.read_text(), (model_dir / runner.MODEL_FILENAME).stat()
    capsys.readouterr()

    # The same command: nothing trained, nothing written.
    assert cli.main(toy_argv(model_dir)) == 0
    assert f"The run in {model_dir} is complete (same settings); its result row is {row_path}" in (
        capsys.readouterr().out
    )
    assert row_path.read_text() == row
    assert (model_dir / runner.MODEL_FILENAME).stat().st_mtime_ns == model_stat.st_mtime_ns

    # Other settings into it: an error naming the directory and the setting.
    assert cli.main(toy_argv(model_dir, "--sparsity", "0.5")) == 2
    line = capsys.readouterr().err.strip()
    assert line == (
        f"error: --model_dir {model_dir} holds a finished run with other settings "
        "(sparsity 0.75 there, 0.5 here): give another --model_dir, or --overwrite to replace it"
    )
    assert row_path.read_text() == row

    # Unless --overwrite.
    assert cli.main(toy_argv(model_dir, "--sparsity", "0.5", "--overwrite")) == 0
    assert json.loads(row_path.read_text())["target_sparsity"] == 0.5

    # The Python API: the row back, no model.
    config = toy_task.ToyConfig(method="magnitude", sparsity=0.5, steps=4)
    result = runner.run(config, str(model_dir), print_fn=lambda *a: None)
    assert result.already_finished and result.model is None
    assert result.row == json.loads(row_path.read_text())


def write_backup(model_dir, epoch, hparams):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    return backup_lib.write(model, str(model_dir / runner.BACKUP_DIRNAME), epoch, hparams)


def test_unusable_backups_are_reported_in_one_line_before_training(toy, tmp_path, capsys):
    model_dir = tmp_path / "run"
    hparams = toy_task.ToyConfig(method="magnitude", sparsity=0.75, steps=4).to_dict()
    write_backup(model_dir, 1, hparams)
    # Backups of another run's settings are not resumed.
    assert cli.main(toy_argv(model_dir, "--sparsity", "0.5")) == 2
    assert f"--model_dir {model_dir} holds an unfinished run with other settings (sparsity 0.75 there" in (
        capsys.readouterr().err
    )
    # Every backup damaged: what happened and what to do, in one line.
    backup = write_backup(model_dir, 2, hparams)
    for epoch in (1, 2):
        path = pathlib.Path(backup.weights_path.replace("000002", f"{epoch:06d}"))
        path.write_bytes(path.read_bytes()[:-10])
    assert cli.main(toy_argv(model_dir)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    backup_dir = model_dir / runner.BACKUP_DIRNAME
    assert lines[0].startswith(f"error: {backup_dir} holds no intact backup (epoch 2: ")
    assert lines[0].endswith(f"delete {backup_dir} to train this run from step 0, or pass --overwrite")

    # An intact backup of another model (other code, same settings).
    other_dir = tmp_path / "other"
    backup = write_backup(other_dir, 1, hparams)
    assert cli.main(toy_argv(other_dir)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {backup.weights_path} does not fit this run's model")


def test_backups_are_written_beside_the_last_good_one(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup_dir = str(tmp_path)
    for epoch in (1, 2, 3):
        model.layers[0].kernel.assign(np.full((2, 1), epoch, "float32"))
        backup_lib.write(model, backup_dir, epoch, {"seed": 0})
    # The newest two are kept.
    assert backup_epochs(tmp_path) == {2: True, 3: True}
    # A partial file of a newer backup is not a backup.
    (tmp_path / "epoch-000004.partial.weights.h5").write_bytes(b"half")
    newest, damaged = backup_lib.scan(backup_dir)
    assert (newest.epoch, damaged) == (3, [])
    # A changed weights file fails its checksum: the one before is used.
    path = tmp_path / "epoch-000003.weights.h5"
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF
    path.write_bytes(bytes(content))
    newest, damaged = backup_lib.scan(backup_dir)
    assert newest.epoch == 2
    assert damaged == [backup_lib.Damaged(3, "epoch-000003.weights.h5 does not match its checksum")]
    model.load_weights(newest.weights_path)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.full((2, 1), 2.0))
    # Writing epoch 3 again replaces the damaged one and drops the partial.
    backup_lib.write(model, backup_dir, 3, {"seed": 0})
    assert backup_epochs(tmp_path) == {2: True, 3: True}
    assert backup_lib.latest_epoch(backup_dir) == 3


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_workers(model_dir, kill_worker_1_at=None):
    workers = [f"localhost:{port}" for port in free_ports(2)]
    return [
        start(
            model_dir, "--strategy", "multi_worker",
            kill_at=kill_worker_1_at if index == 1 else None,
            tf_config={"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}},
        )
        for index in range(2)
    ]


def wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
def test_two_workers_one_killed_end_as_an_uninterrupted_pair(toy, tmp_path, monkeypatch):
    expected_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = start_workers(expected_dir)  # Alongside the killed pair.
    try:
        # Worker 1 dies while writing its backup of epoch 2. Worker 0 (the
        # chief) completes its own, then waits for worker 1 at the next
        # step until it is killed too, as a cluster manager would.
        chief, other = start_workers(killed_dir, kill_worker_1_at="backup:2")
        finish(other, KILLED)
        wait_for(killed_dir / runner.BACKUP_DIRNAME / "epoch-000002.json")
        chief.kill()
        finish(chief, KILLED)
        worker_backups = killed_dir / "workers" / "worker_1" / runner.BACKUP_DIRNAME
        assert backup_epochs(worker_backups) == {1: True, 2: False}

        # Both restart from the chief's backup of epoch 2, which worker 1's
        # own backups lack: the two resume at the same step.
        outputs = [finish(process) for process in start_workers(killed_dir)]
        assert "(Keras epoch 2)" in outputs[0]
        for process in reference:
            finish(process)
    finally:
        for process in reference:
            if process.poll() is None:
                process.kill()
    assert_same_outputs(killed_dir, expected_dir)
    worker_masks = np.load(killed_dir / "workers" / "worker_1" / runner.MASKS_FILENAME)
    chief_masks = np.load(killed_dir / runner.MASKS_FILENAME)
    for name in chief_masks.files:
        if name != MASKS_METADATA:
            np.testing.assert_array_equal(worker_masks[name], chief_masks[name], err_msg=name)

    # The same run again: each worker finds it complete before it would
    # wait for the other (in this process: a strategy is never made).
    def no_strategy(*args):
        raise AssertionError("a finished run made a strategy")

    monkeypatch.setattr(runner.distribute, "make_strategy", no_strategy)
    config = toy_task.ToyConfig(
        method="magnitude", sparsity=0.75, deterministic=True, strategy="multi_worker"
    )
    row = (killed_dir / runner.RESULT_FILENAME).read_text()
    for index in range(2):
        tf_config = {"cluster": {"worker": ["localhost:1", "localhost:2"]},
                     "task": {"type": "worker", "index": index}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
        result = runner.run(config, str(killed_dir), print_fn=lambda *a: None)
        assert result.already_finished and result.is_chief == (index == 0)
        assert result.row == json.loads(row)
    assert (killed_dir / runner.RESULT_FILENAME).read_text() == row


# The reference tasks' pipelines: resumed after k steps of a deterministic
# run, they yield what the uninterrupted pipeline yields from step k on.

RESUME_AT, COMPARED_STEPS = 3, 2


def assert_resumes_in_place(make_dataset_fn):
    """`make_dataset_fn(skip_steps)` gives a `fn(input_context)`; with two
    replicas in sync, each step takes two of its batches."""
    import tensorflow as tf

    context = tf.distribute.InputContext(num_replicas_in_sync=2)
    batches = 2 * (RESUME_AT + COMPARED_STEPS)
    expected = list(make_dataset_fn(0)(context).take(batches))[2 * RESUME_AT:]
    actual = list(make_dataset_fn(RESUME_AT)(context).take(2 * COMPARED_STEPS))
    flat = [tf.nest.flatten(batch) for batch in (expected, actual)]
    assert len(flat[0]) == len(flat[1]) > 0
    for expected_part, actual_part in zip(*flat):
        np.testing.assert_array_equal(actual_part.numpy(), expected_part.numpy())


@pytest.fixture
def op_determinism():
    """TensorFlow's op determinism for one test (the runner turns it on for
    good; the test turns it off again with TensorFlow's private switch)."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    tf.config.experimental.enable_op_determinism()
    yield
    tf_config.disable_op_determinism()


def test_imagenet_pipeline_resumes_in_place(op_determinism):
    import tensorflow_datasets as tfds

    from tf_sparsity_models.resnet50 import data as resnet_data

    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        images = resnet_data.load("imagenet2012")

        def make_dataset_fn(skip_steps):
            # Random crops and flips: replayed, not skipped, before them.
            keras.utils.set_random_seed(0)
            return images.train_dataset_fn(
                4, 32, shuffle_seed=5, shuffle_buffer=8, skip_steps=skip_steps, deterministic=True
            )

        assert_resumes_in_place(make_dataset_fn)


def test_translation_pipeline_resumes_in_place():
    from tf_sparsity_models.transformer import data as translation_data

    pairs = translation_data.SyntheticTranslation(vocabulary_size=50, max_length=16, seed=0)
    pairs.EXAMPLES = 256  # Of 4,096: the shuffle buffer holds them all.
    assert_resumes_in_place(
        lambda skip_steps: pairs.train_dataset_fn(
            128, 16, shuffle_seed=5, shuffle_buffer=64, skip_steps=skip_steps, deterministic=True
        )
    )
