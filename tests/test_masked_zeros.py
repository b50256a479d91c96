"""Training without the forward mask multiply: while the optimizer keeps
zero weights at zero, masked weights are held at zero in the variables and
the forward pass uses them as they are (only the gradient is masked). The
results must equal the multiply's, and every other case must multiply."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity import optimizer_state

pytestmark = pytest.mark.core


def mlp():
    return keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(16, activation="tanh", name="a"),
        keras.layers.Dense(4, name="b"),
    ])


def data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 12)).astype("float32"), rng.normal(size=(n, 4)).astype("float32")


def train(method, optimizer, keep_zeros, monkeypatch, steps=12):
    """A custom loop with `update_masks`; `keep_zeros=False` forces the
    multiply path."""
    if not keep_zeros:
        monkeypatch.setattr(optimizer_state, "keeps_zeros", lambda optimizer: False)
    keras.utils.set_random_seed(0)
    model = tfs.sparsify(mlp(), method)
    model.compile(optimizer, "mse", jit_compile=True)
    x, y = data()
    for step in range(steps):
        tfs.update_masks(model, step)
        model.train_on_batch(x[step % 4 * 16 :][:16], y[step % 4 * 16 :][:16])
    monkeypatch.undo()
    return model


def weights(model):
    return [ops.convert_to_numpy(v) for v in model.trainable_variables]


METHODS = {
    "magnitude": lambda: tfs.MagnitudePruning(tfs.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=8, frequency=2)),
    "random": lambda: tfs.RandomPruning(tfs.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=8, frequency=2), seed=0),
    "set": lambda: tfs.SET(0.75, update_frequency=3, end_step=9, seed=0),
    "rigl": lambda: tfs.RigL(0.75, update_frequency=3, end_step=9, seed=0),
}


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_training_without_the_forward_multiply_equals_training_with_it(name, optimizer, monkeypatch):
    make_optimizer = {
        "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "adam": lambda: keras.optimizers.Adam(1e-2),
    }[optimizer]
    fast = train(METHODS[name](), make_optimizer(), True, monkeypatch)
    slow = train(METHODS[name](), make_optimizer(), False, monkeypatch)
    assert all(w.masked_zeros_kept for _, w in tfs.sparse_layers(fast))
    assert not any(w.masked_zeros_kept for _, w in tfs.sparse_layers(slow))
    for kernel in tfs.sparse_kernels(fast):
        mask = ops.convert_to_numpy(kernel.state.mask)
        assert 0.7 <= 1 - mask.mean() <= 0.8
        # Held at exactly zero where masked.
        assert np.count_nonzero(ops.convert_to_numpy(kernel.variable)[mask == 0]) == 0
    for a, b in zip(tfs.sparse_kernels(fast), tfs.sparse_kernels(slow)):
        np.testing.assert_array_equal(ops.convert_to_numpy(a.state.mask), ops.convert_to_numpy(b.state.mask))
        np.testing.assert_allclose(
            ops.convert_to_numpy(a.inference_value()), ops.convert_to_numpy(b.inference_value()), rtol=1e-5, atol=1e-6
        )
    x, _ = data(1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(fast(x, training=True)), ops.convert_to_numpy(slow(x, training=True)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "optimizer, method",
    [
        (lambda: keras.optimizers.Adafactor(0.05), METHODS["magnitude"]),
        (lambda: keras.optimizers.Adam(1e-2, use_ema=True, ema_overwrite_frequency=3), METHODS["magnitude"]),
        (
            lambda: keras.optimizers.Adam(1e-2),
            lambda: tfs.MagnitudePruning(tfs.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=8, frequency=2), regrowth=True),
        ),
    ],
    ids=["adafactor", "ema", "regrowth"],
)
def test_other_optimizers_and_regrowth_keep_the_multiply(optimizer, method, monkeypatch):
    model = train(method(), optimizer(), True, monkeypatch)
    assert not any(w.masked_zeros_kept for _, w in tfs.sparse_layers(model))
    x, _ = data(1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(tfs.strip(model)(x)), ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6
    )


def test_fit_holds_masked_weights_at_zero_and_refreshes_after_loading(tmp_path):
    x, y = data()
    model = tfs.sparsify(mlp(), tfs.FixedMask())
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    rng = np.random.default_rng(0)
    masks = {k.path: rng.random(k.shape) > 0.5 for k in tfs.sparse_kernels(model)}
    for kernel in tfs.sparse_kernels(model):
        kernel.state.mask.assign(masks[kernel.path].astype("float32"))
    tfs.save_masks(model, tmp_path / "masks.npz")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    for kernel in tfs.sparse_kernels(model):
        assert kernel.wrapper.masked_zeros_kept
        values = ops.convert_to_numpy(kernel.variable)
        assert np.count_nonzero(values[~masks[kernel.path]]) == 0
        assert np.count_nonzero(values[masks[kernel.path]]) == masks[kernel.path].sum()
    # Dense weights loaded into the model: the next fit zeroes them again
    # where masked, so training computes with kernel * mask.
    dense = [rng.normal(size=v.shape).astype("float32") for v in model.layers[0].layer.weights]
    model.layers[0].layer.set_weights(dense)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    kernel = tfs.sparse_kernels(model)[0]
    assert np.count_nonzero(ops.convert_to_numpy(kernel.variable)[~masks[kernel.path]]) == 0
    # New masks loaded while zeros are kept: zeroed at once, slots too.
    shuffled = tmp_path / "masks.npz"
    tfs.load_masks(model, shuffled, shuffle_seed=3)
    slots = optimizer_state.optimizer_slots(model)
    for kernel in tfs.sparse_kernels(model):
        dead = ops.convert_to_numpy(kernel.state.mask) == 0
        for variable in (kernel.variable, *slots[id(kernel.variable)]):
            assert np.count_nonzero(ops.convert_to_numpy(variable)[dead]) == 0


@pytest.mark.parametrize("name", ["magnitude", "set"])
def test_updates_after_recompiling_zero_the_new_optimizers_slots(name):
    """A group assigns its masks, weights and slots in one traced call; a
    new optimizer (new slot variables) must get a new one, not zero the
    slots of the optimizer it replaced."""
    keras.utils.set_random_seed(0)
    model = tfs.sparsify(mlp(), METHODS[name]())
    x, y = data()
    # Both schedules update at step 6 (magnitude every 2 steps, SET every 3).
    for steps in (range(0, 4), range(4, 7)):
        model.compile(keras.optimizers.Adam(1e-2), "mse")
        for step in steps:
            tfs.update_masks(model, step)
            model.train_on_batch(x[step % 4 * 16 :][:16], y[step % 4 * 16 :][:16])
    slots = optimizer_state.optimizer_slots(model)
    assert slots
    for kernel in tfs.sparse_kernels(model):
        assert kernel.wrapper.masked_zeros_kept
        dead = ops.convert_to_numpy(kernel.state.mask) == 0
        assert 0.3 < dead.mean() < 0.8
        for variable in (kernel.variable, *slots[id(kernel.variable)]):
            assert np.count_nonzero(ops.convert_to_numpy(variable)[dead]) == 0
