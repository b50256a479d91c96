"""SET and RigL: constant sparsity, exact moves, zeroed growth, replicas,
resume."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity import masks as mask_ops
from tf_sparsity import optimizer_state
from tests.test_resume import Interrupt

pytestmark = pytest.mark.core

METHODS = [tfs.SET, tfs.RigL]


def mlp():
    return keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(16, activation="tanh", name="a"), keras.layers.Dense(4, name="b")]
    )


def state(model, key):
    return {
        path: ops.convert_to_numpy(getattr(w.kernels[0].state, key)).copy()
        for path, w in tfs.sparse_layers(model)
    }


def kernels(model):
    return {path: ops.convert_to_numpy(w.kernels[0].variable).copy() for path, w in tfs.sparse_layers(model)}


def data(rng, n=64):
    return rng.normal(size=(n, 12)).astype("float32"), rng.normal(size=(n, 4)).astype("float32")


def test_drop_fraction_decays_like_a_cosine_to_zero_at_end_step():
    method = tfs.SET(0.9, update_frequency=10, end_step=100, seed=0)
    assert method.fraction_at(0) == pytest.approx(0.3)
    assert method.fraction_at(50) == pytest.approx(0.15)
    assert method.fraction_at(100) == pytest.approx(0.0, abs=1e-12)
    constant = tfs.RigL(0.9, drop_fraction=0.2, drop_fraction_decay="constant", seed=0)
    assert constant.fraction_at(10**6) == 0.2
    schedule = method.step_schedule
    # end_step is the schedule's last step (included): the update there
    # moves a fraction of 0 under the cosine decay.
    assert [s for s in range(120) if schedule.should_update(s)] == list(range(10, 101, 10))
    assert type(schedule).from_config(schedule.get_config()) == schedule


@pytest.mark.parametrize("method_class", METHODS)
def test_masks_start_random_at_the_target_and_keep_it_through_updates(method_class, rng):
    model = tfs.sparsify(mlp(), method_class(0.75, update_frequency=2, end_step=12, drop_fraction=0.5, seed=3))
    masks = state(model, "mask")
    for path, mask in masks.items():
        assert np.sum(mask == 0) == mask_ops.num_to_prune(0.75, mask.size), path
    for step in range(14):
        old_masks, old_kernels = state(model, "mask"), kernels(model)
        for _, wrapper in tfs.sparse_layers(model):
            wrapper.kernels[0].variable.assign(rng.normal(size=wrapper.kernels[0].variable.shape))
            if method_class is tfs.RigL:
                grad = wrapper.kernels[0].state.gradient
                grad.assign(rng.normal(size=grad.shape))
        old_kernels = kernels(model)
        updated = tfs.update_masks(model, step)
        assert updated == (step in range(2, 13, 2))
        new_masks, new_kernels = state(model, "mask"), kernels(model)
        for path in masks:
            old, new = old_masks[path], new_masks[path]
            assert new.sum() == old.sum(), (path, step)
            if not updated:
                continue
            active = int(old.sum())
            moved = mask_ops.num_to_prune(model.get_layer(path).method.fraction_at(step), active)
            magnitudes = np.where(old > 0, np.abs(old_kernels[path]), np.inf).ravel()
            dropped = np.zeros(old.size, bool)
            dropped[np.argsort(magnitudes, kind="stable")[:moved]] = True
            kept = (old.ravel() > 0) & ~dropped
            np.testing.assert_array_equal(new.ravel()[kept], 1)
            grown = (new.ravel() > 0) & ~kept
            assert grown.sum() == moved
            # Dropped and grown weights are zero right after the update.
            np.testing.assert_array_equal(new_kernels[path].ravel()[~kept], 0)
            np.testing.assert_array_equal(new_kernels[path].ravel()[kept], old_kernels[path].ravel()[kept])


def test_rigl_grows_exactly_where_the_dense_gradient_is_largest():
    layer = keras.layers.Dense(1)
    layer.build((None, 8))
    wrapper = tfs.sparsify(layer, tfs.RigL(0.5, update_frequency=1, drop_fraction=0.5,
                                           drop_fraction_decay="constant", seed=0))
    state_ = wrapper.kernels[0].state
    state_.mask.assign(np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")[:, None])
    wrapper.kernels[0].variable.assign(np.array([0.1, 2.0, -0.05, 3.0, 9, 9, 9, 9], "float32")[:, None])
    # |gradient|: largest at 6 and 0 (0 is just dropped: it may come back).
    state_.gradient.assign(np.array([5.0, 0.0, 0.1, 0.0, 0.2, 0.3, -7.0, 0.4], "float32")[:, None])
    tfs.update_masks(wrapper, 1)
    # Drop 2 of 4 active (0 and 2, smallest |w|); grow the 2 highest |g|
    # among positions 0, 2, 4-7: 6 (7.0) and 0 (5.0).
    np.testing.assert_array_equal(ops.convert_to_numpy(state_.mask)[:, 0], [1, 1, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(wrapper.kernels[0].variable)[:, 0], [0, 2.0, 0, 3.0, 0, 0, 0, 0]
    )


@pytest.mark.parametrize("method_class", METHODS)
def test_grown_weights_optimizer_moments_are_reset(method_class, rng):
    x, y = data(rng)
    model = tfs.sparsify(mlp(), method_class(0.5, update_frequency=1000, end_step=2000, seed=0))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    slots = optimizer_state.optimizer_slots(model)
    kernel = model.get_layer("a").kernels[0].variable
    assert len(slots[id(kernel)]) == 2  # Adam's momentum and velocity.
    old = state(model, "mask")["a"]
    assert all(np.any(ops.convert_to_numpy(s) != 0) for s in slots[id(kernel)])
    assert tfs.update_masks(model, 1000)
    new = state(model, "mask")["a"]
    changed = (old != new) | (old == 0)
    assert np.any((new > 0) & (old == 0))
    for slot in slots[id(kernel)]:
        np.testing.assert_array_equal(ops.convert_to_numpy(slot)[changed], 0)
        assert np.any(ops.convert_to_numpy(slot)[~changed] != 0)
    # RigL's gradient variable is overwritten, never optimized: no slots.
    if method_class is tfs.RigL:
        gradient = model.get_layer("a").kernels[0].state.gradient
        assert id(gradient) not in slots
        assert np.any(ops.convert_to_numpy(gradient) != 0)


class MaskBeforeBatch(keras.callbacks.Callback):
    """Records layer `a`'s mask at the end of batch `batch`."""

    def __init__(self, batch):
        super().__init__()
        self.batch, self.mask = batch, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            self.mask = state(self.model, "mask")["a"]


def test_reset_reaches_the_training_step_after_an_update(rng):
    # Momentum starts at 1 everywhere; an update before batch 3, then one
    # SGD-with-momentum step. Where a weight was grown, a reset momentum is
    # -lr * gradient and the weight (from 0) equals it; one left over would
    # add 0.9 * old. On JAX this checks that the trainer's state picks up
    # the callback's writes.
    x, y = data(rng)
    learning_rate = 0.1
    model = tfs.sparsify(
        mlp(), tfs.RigL(0.5, update_frequency=3, drop_fraction=0.5, drop_fraction_decay="constant", seed=0)
    )
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9), "mse", jit_compile=True)
    model.optimizer.build(model.trainable_variables)
    for slot in optimizer_state.optimizer_slots(model)[id(model.get_layer("a").kernels[0].variable)]:
        slot.assign(ops.ones(slot.shape))
    before = MaskBeforeBatch(2)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[tfs.SparsityCallback(), before])
    layer = model.get_layer("a")
    kernel = layer.kernels[0].variable
    mask = state(model, "mask")["a"]
    gradient = ops.convert_to_numpy(layer.kernels[0].state.gradient)
    (momentum,) = [ops.convert_to_numpy(s) for s in optimizer_state.optimizer_slots(model)[id(kernel)]]
    grown = (mask > 0) & (before.mask == 0)  # (regrown just-dropped ones aside)
    kept = (mask > 0) & ~grown
    assert 0 < grown.sum() <= mask_ops.num_to_prune(0.5, int(before.mask.sum()))
    np.testing.assert_allclose(momentum[grown], -learning_rate * gradient[grown], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ops.convert_to_numpy(kernel)[grown], momentum[grown], rtol=1e-6, atol=1e-7)
    assert np.abs(momentum[kept] + learning_rate * gradient[kept]).max() > 1e-3


def test_rigl_under_loss_scaling_reads_the_scaled_gradient(rng):
    x, y = data(rng)
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = tfs.sparsify(mlp(), tfs.RigL(0.5, update_frequency=2, end_step=20, seed=0))
        model.compile(keras.optimizers.Adam(1e-2), "mse")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = state(model, "mask")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    slots = optimizer_state.optimizer_slots(model)
    for path, wrapper in tfs.sparse_layers(model):
        gradient = ops.convert_to_numpy(wrapper.kernels[0].state.gradient)
        assert np.isfinite(gradient).all() and np.any(gradient != 0), path
        assert len(slots[id(wrapper.kernels[0].variable)]) == 2, path
        mask = state(model, "mask")[path]
        assert mask.sum() == before[path].sum() and np.any(mask != before[path]), path


def test_rigl_refuses_gradient_accumulation(rng):
    x, y = data(rng)
    model = tfs.sparsify(mlp(), tfs.RigL(0.5, update_frequency=2, end_step=20, seed=0))
    model.compile(keras.optimizers.SGD(0.01, gradient_accumulation_steps=2), "mse")
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    # SET does not read gradients.
    model = tfs.sparsify(mlp(), tfs.SET(0.5, update_frequency=2, end_step=20, seed=0))
    model.compile(keras.optimizers.SGD(0.01, gradient_accumulation_steps=2), "mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])


def test_rigl_refuses_to_grow_before_any_gradient_is_recorded(rng):
    x, y = data(rng)
    model = tfs.sparsify(mlp(), tfs.RigL(0.5, update_frequency=2, end_step=20, seed=0))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    masks = state(model, "mask")
    with pytest.raises(ValueError, match=r"RigL grows .* update of step 2 no kernel has one recorded"):
        tfs.update_masks(model, 2)
    for path, mask in state(model, "mask").items():
        np.testing.assert_array_equal(mask, masks[path])
    model.train_on_batch(x[:16], y[:16])
    assert tfs.update_masks(model, 2)
    assert any((state(model, "mask")[path] != masks[path]).any() for path in masks)


@pytest.mark.parametrize("method_class", METHODS)
def test_training_keeps_sparsity_and_strip_equals_inference(method_class, rng):
    x, y = data(rng, 128)
    model = tfs.sparsify(mlp(), method_class(0.8, update_frequency=3, end_step=20, seed=1), distribution=tfs.ERK())
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse", jit_compile=True)
    before = state(model, "mask")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[tfs.SparsityCallback()])
    after = state(model, "mask")
    for path in before:
        assert after[path].sum() == before[path].sum()
        assert np.any(after[path] != before[path]), f"{path}: no connection moved"
    np.testing.assert_allclose(tfs.strip(model).predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method_class", METHODS)
def test_resumed_run_moves_the_same_connections(method_class, tmp_path, rng):
    x, y = data(rng, 96)

    def build():
        keras.utils.set_random_seed(7)
        model = tfs.sparsify(mlp(), method_class(0.7, update_frequency=2, end_step=40, seed=5))
        model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=True)
        return model

    fit = dict(x=x, y=y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    reference = build()
    reference.fit(callbacks=[tfs.SparsityCallback()], **fit)
    backup = str(tmp_path / "backup")
    interrupted = build()
    with pytest.raises(RuntimeError, match="preemption"):
        interrupted.fit(
            callbacks=[tfs.SparsityCallback(), keras.callbacks.BackupAndRestore(backup), Interrupt(15)], **fit
        )
    resumed = build()
    resumed.fit(callbacks=[tfs.SparsityCallback(), keras.callbacks.BackupAndRestore(backup)], **fit)
    for path, mask in state(reference, "mask").items():
        np.testing.assert_array_equal(state(resumed, "mask")[path], mask, err_msg=path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="end_step"):
        tfs.SET(0.9)  # cosine decay needs an end
    with pytest.raises(ValueError, match="drop_fraction"):
        tfs.RigL(0.9, drop_fraction=1.5, end_step=10)
    with pytest.raises(ValueError, match="drop_fraction_decay"):
        tfs.RigL(0.9, drop_fraction_decay="linear", end_step=10)
    with pytest.raises(ValueError, match="begin_step"):
        tfs.make_method("rigl", 0.9, 1000, begin_step=100)
    made = tfs.make_method("set", 0.9, 1000, seed=1)
    assert (made.update_frequency, made.end_step, made.drop_fraction) == (37, 750, 0.3)
    assert tfs.make_method("rigl", 0.9, 100_000, seed=1).update_frequency == 100


@pytest.mark.tensorflow
def test_masks_and_gradients_identical_across_replicas(rng):
    import tensorflow as tf

    x, y = data(rng, 128)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    # One-device reduction: collectives of several strategies in one test
    # process can collide (see test_tensorflow.py).
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())

    def train(strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = tfs.sparsify(mlp(), tfs.RigL(0.75, update_frequency=2, end_step=20, seed=2))
            # XLA cannot compile a replica step across logical CPU devices.
            model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse", jit_compile=False)
        before = state(model, "mask")
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[tfs.SparsityCallback()])
        return model, before

    model, before = train(strategy)
    one_device, _ = train(tf.distribute.get_strategy())
    # The recorded gradient is the replicas' mean of their gradients of the
    # loss scaled by 1 / replicas: the global batch's over 2. Same ranking,
    # same masks as on one device.
    np.testing.assert_array_equal(state(model, "mask")["a"], state(one_device, "mask")["a"])
    np.testing.assert_allclose(2 * state(model, "gradient")["a"], state(one_device, "gradient")["a"], atol=1e-6)
    for path, wrapper in tfs.sparse_layers(model):
        variables = wrapper.kernels[0].state
        for name in ("mask", "gradient"):
            replicas = [r.numpy() for r in strategy.experimental_local_results(getattr(variables, name).value)]
            assert len(replicas) == 2
            np.testing.assert_array_equal(replicas[0], replicas[1], err_msg=f"{path} {name}")
        kernel_replicas = [r.numpy() for r in strategy.experimental_local_results(wrapper.kernels[0].variable.value)]
        np.testing.assert_array_equal(kernel_replicas[0], kernel_replicas[1])
        mask = variables.mask.numpy()
        assert mask.sum() == before[path].sum() and np.any(mask != before[path])


JAX_DATA_PARALLEL = """
import os, sys
import keras, numpy as np, jax
from keras import ops
import tf_sparsity as tfs
assert len(jax.devices()) == 2
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 12)).astype("float32"), rng.normal(size=(64, 4)).astype("float32")
def train():
    keras.utils.set_random_seed(1)
    model = tfs.sparsify(keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="tanh", name="a"),
                                           keras.layers.Dense(4, name="b")]),
                         tfs.RigL(0.5, update_frequency=2, end_step=20, seed=0))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[tfs.SparsityCallback()])
    return {(name, key): ops.convert_to_numpy(getattr(model.get_layer(name).kernels[0].state, key))
            for name in ("a", "b") for key in ("mask", "gradient")}
single = train()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
parallel = train()
for key, value in single.items():
    np.testing.assert_allclose(parallel[key], value, atol=1e-5, err_msg=str(key))
print("same masks and gradients")
"""


def test_rigl_under_jax_data_parallel_matches_one_device():
    # The batch split over two (host) devices: the recorded gradient is the
    # global batch's, so masks match a one-device run. Its own process:
    # the device count is fixed when JAX starts.
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS=flags.strip())
    result = subprocess.run(
        [sys.executable, "-c", JAX_DATA_PARALLEL], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same masks and gradients" in result.stdout


@pytest.mark.tensorflow
def test_task_presets_and_a_tiny_resnet_run(tmp_path):
    from tf_sparsity_models.common import runner
    from tf_sparsity_models.resnet50 import configs
    from tf_sparsity_models.transformer import configs as transformer_configs

    config = configs.make_config("rigl_90")
    assert (config.method, config.sparsity, config.distribution) == ("rigl", 0.9, "erk")
    method = runner.make_method(config)
    # RigL's 100 steps of 4,096 images = 400 of this task's 1,024.
    assert (method.update_frequency, method.end_step, method.drop_fraction) == (400, 96_000, 0.3)
    assert method.drop_fraction_decay == "cosine"
    longer = configs.make_config("rigl_5x_80")
    assert longer.steps == 640_000 and runner.make_method(longer).end_step == 480_000
    assert configs.make_config("rigl_uniform_80").distribution == "uniform"
    assert configs.make_config("set_80").method == "set"
    assert transformer_configs.PRESETS["rigl_90"]["distribution"] == "erk"

    config = configs.make_config("tiny", {"method": "rigl", "sparsity": 0.8, "distribution": "erk", "export": False})
    result = runner.run(config, str(tmp_path), verbose=0, print_fn=lambda *a: None)
    assert result.row["method"] == "rigl"
    masks = [
        ops.convert_to_numpy(kernel.state.mask) for kernel in tfs.sparse_kernels(result.model)
    ]
    assert len({round(float((m == 0).mean()), 2) for m in masks}) > 1  # ERK: not uniform
    # Over all kernels (ERK keeps some layers dense); a grown weight that
    # is still exactly 0 may add a little.
    assert 0.8 - 2e-3 <= result.row["global_sparsity"] <= 0.81


def groups_and_blocks(mask, structure):
    """The mask's matrix view (input axis last) cut into N:M groups or
    (1, 4) blocks: an array (..., 4) of 0/1."""
    matrix = np.moveaxis(mask, 0, -1).reshape(-1, mask.shape[0])
    return matrix.reshape(matrix.shape[0], -1, 4)


@pytest.mark.parametrize("method_class", METHODS)
@pytest.mark.parametrize("structure", [tfs.Block((1, 4)), tfs.NM(2, 4)], ids=["block_1x4", "nm_2_4"])
def test_structured_moves_keep_exact_counts_per_block_or_group(method_class, structure, rng):
    model = tfs.sparsify(mlp(), method_class(0.5, update_frequency=1, end_step=8, drop_fraction=0.5,
                                             drop_fraction_decay="constant", seed=3, structure=structure))
    first = state(model, "mask")
    changed = set()
    for step in range(9):
        old_masks = state(model, "mask")
        for kernel in tfs.sparse_kernels(model):
            kernel.variable.assign(rng.normal(size=kernel.shape))
            if method_class is tfs.RigL:
                kernel.state.gradient.assign(rng.normal(size=kernel.shape))
        assert tfs.update_masks(model, step) == (step >= 1)
        new_kernels = kernels(model)
        for path, mask in state(model, "mask").items():
            units = groups_and_blocks(mask, structure)
            if isinstance(structure, tfs.NM):
                # Every group of 4 along the input axis keeps exactly 2.
                np.testing.assert_array_equal(units.sum(axis=-1), 2, err_msg=f"{path} step {step}")
            else:
                sums = units.sum(axis=-1)
                assert set(np.unique(sums)) <= {0, 4}, (path, step)  # Whole blocks only.
                assert np.sum(sums == 0) == mask_ops.num_to_prune(0.5, sums.size), (path, step)
            if not np.array_equal(mask, old_masks[path]):
                changed.add(path)
                # Grown weights start at zero.
                grown = (mask > 0) & (old_masks[path] == 0)
                np.testing.assert_array_equal(new_kernels[path][grown], 0)
    assert changed == set(first)  # Masks did move, in every kernel.


@pytest.mark.parametrize("method_class", METHODS)
def test_global_scope_moves_connections_across_kernels_and_keeps_the_total(method_class, rng):
    model = tfs.sparsify(mlp(), method_class(0.5, update_frequency=1, end_step=20, drop_fraction=0.5,
                                             drop_fraction_decay="constant", seed=1, scope="global"))
    total = sum(m.sum() for m in state(model, "mask").values())
    per_layer = {tuple(int(m.sum()) for m in state(model, "mask").values())}
    for step in range(1, 12):
        for kernel in tfs.sparse_kernels(model):
            # One layer's weights are much larger: a global ranking drops the
            # other's and regrows into this one.
            scale = 10.0 if kernel.layer_path == "a" else 0.1
            kernel.variable.assign(scale * rng.normal(size=kernel.shape))
            if method_class is tfs.RigL:
                kernel.state.gradient.assign(scale * rng.normal(size=kernel.shape))
        tfs.update_masks(model, step)
        masks = state(model, "mask")
        assert sum(m.sum() for m in masks.values()) == total
        per_layer.add(tuple(int(m.sum()) for m in masks.values()))
    assert len(per_layer) > 1  # Per-layer counts changed; the total did not.
    with pytest.raises(ValueError, match="global"):
        method_class(0.5, update_frequency=1, end_step=10, structure=tfs.NM(2, 4), scope="global")
    with pytest.raises(ValueError, match="0.5"):
        method_class(0.75, update_frequency=1, end_step=10, structure=tfs.NM(2, 4))


@pytest.mark.parametrize("method_class", METHODS)
def test_structure_and_scope_round_trip_in_the_config(method_class):
    method = method_class(0.5, update_frequency=2, end_step=10, seed=0, structure=tfs.Block((1, 4)), scope="global")
    assert type(method).from_config(method.get_config()) == method
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(method))
    assert restored.structure == tfs.Block((1, 4)) and restored.scope == "global"
