"""TensorFlow-only features: tf.distribute, SavedModel export, summaries."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity import masks as mask_ops
from tests import models

pytestmark = pytest.mark.tensorflow


def test_mirrored_strategy_keeps_replica_masks_identical_and_exact(rng):
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2
    # Collective ops of several strategies in one test process can collide
    # ("Shape mismatch in the collective instance"): reduce on one device.
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    x = rng.normal(size=(256, 8)).astype("float32")
    y = rng.integers(0, 4, size=256)
    with strategy.scope():
        schedule = tfs.PolynomialDecay(0.0, 0.85, begin_step=2, end_step=20, frequency=3)
        sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
        sparse.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            # XLA cannot compile a replica step across logical CPU devices
            # (plain Keras models fail too); the mask update is still XLA.
            jit_compile=False,
        )
    sparse.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[tfs.SparsityCallback()])
    for path, wrapper in tfs.sparse_layers(sparse):
        mask = wrapper.kernels[0].state.mask
        replicas = [v.numpy() for v in mask.value.values] if hasattr(mask.value, "values") else None
        replicas = replicas or [r.numpy() for r in strategy.experimental_local_results(mask.value)]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])
        assert (replicas[0] == 0).sum() == mask_ops.num_to_prune(0.85, replicas[0].size)
        kernels = [k.numpy() for k in strategy.experimental_local_results(wrapper.layer._kernel.value)]
        np.testing.assert_allclose(kernels[0], kernels[1])


_LOAD_WITHOUT_TF_SPARSITY = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    class BlockTfSparsity:
        def find_spec(self, name, path=None, target=None):
            if name == "tf_sparsity" or name.startswith("tf_sparsity."):
                raise ImportError("tf_sparsity is blocked in this process")

    sys.meta_path.insert(0, BlockTfSparsity())
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    x = np.load(sys.argv[2])
    outputs = loaded.signatures["serving_default"](tf.constant(x))
    (value,) = outputs.values()
    np.save(sys.argv[3], value.numpy())
    ops = {op.type for f in loaded.signatures["serving_default"].graph.get_operations() for op in [f]}
    print(json.dumps(sorted(ops)))
    """
)


def test_export_saved_model_serves_in_a_process_without_tf_sparsity(rng, tmp_path):
    x = rng.normal(size=(16, 8)).astype("float32")
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(tfs.OneShot(0.7)))
    tfs.update_masks(sparse, 0)
    expected = ops.convert_to_numpy(sparse(x))
    export_dir = str(tmp_path / "export" / "1")
    tfs.export_saved_model(sparse, export_dir)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "serve.py"
    script.write_text(_LOAD_WITHOUT_TF_SPARSITY)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(script), export_dir, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", export_dir, "--tag_set", "serve", "--signature_def", "serving_default"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert "inputs[" in shown.stdout and "outputs[" in shown.stdout
    # No mask variables reached the SavedModel.
    variables = subprocess.run(
        [sys.executable, "-c", "import sys, tensorflow as tf; print([v.name for v in tf.saved_model.load(sys.argv[1]).variables])", export_dir],
        capture_output=True, text=True, env=env,
    )
    assert "kernel" in variables.stdout and "mask" not in variables.stdout


def test_sparsity_callback_writes_tensorboard_scalars(rng, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 4, size=64)
    schedule = tfs.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=6, frequency=2)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    sparse.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    log_dir = str(tmp_path / "logs")
    sparse.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[tfs.SparsityCallback(log_dir=log_dir), keras.callbacks.TensorBoard(log_dir)],
    )
    acc = event_accumulator.EventAccumulator(os.path.join(log_dir, "sparsity"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"sparsity/global", "sparsity/target", "sparsity/hidden/kernel", "sparsity/logits/kernel"} <= tags
    steps = [event.step for event in acc.Tensors("sparsity/global")]
    # Every mask update (0, 2, 4, 6) and every epoch end (4, 8) is logged.
    assert sorted(set(steps)) == [0, 2, 4, 6, 8]
    final = acc.Tensors("sparsity/target")[-1]
    assert float(tf_value(final)) == pytest.approx(0.5)
    # Keras's TensorBoard callback, placed after ours, logged `sparsity` too.
    train = event_accumulator.EventAccumulator(os.path.join(log_dir, "train"))
    train.Reload()
    assert "epoch_sparsity" in train.Tags()["tensors"]


def tf_value(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)


def test_gradient_tape_training_loop_with_update_masks(rng):
    import tensorflow as tf

    x = rng.normal(size=(128, 8)).astype("float32")
    y = rng.normal(size=(128, 4)).astype("float32")
    schedule = tfs.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=10, frequency=2)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    optimizer = keras.optimizers.SGD(0.05)

    @tf.function(jit_compile=True)
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((sparse(xb, training=True) - yb) ** 2)
        grads = tape.gradient(loss, sparse.trainable_variables)
        optimizer.apply_gradients(zip(grads, sparse.trainable_variables))
        return loss

    for step in range(12):
        tfs.update_masks(sparse, step)
        train_step(x[(step % 4) * 32 : (step % 4 + 1) * 32], y[(step % 4) * 32 : (step % 4 + 1) * 32])
    for row in tfs.sparsity_summary(sparse, print_fn=None).layers:
        if row.wrapped:
            assert row.size - row.nonzero == mask_ops.num_to_prune(0.6, row.size)
