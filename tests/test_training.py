import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity import masks as mask_ops
from tf_sparsity import optimizer_state
from tf_sparsity.methods import updates
from tests import models

pytestmark = pytest.mark.core


def data(rng, n=256, dim=8, classes=4):
    x = rng.normal(size=(n, dim)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


def compile_model(model, jit_compile=True, **kwargs):
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
        **kwargs,
    )


def assert_exact_sparsity(model, sparsity):
    report = tfs.sparsity_summary(model, print_fn=None)
    for row in report.layers:
        if row.wrapped:
            assert row.size - row.nonzero == mask_ops.num_to_prune(sparsity, row.size), row


@pytest.mark.parametrize("jit_compile", [True, False])
def test_fit_reaches_the_exact_target(rng, jit_compile):
    x, y = data(rng)
    schedule = tfs.PolynomialDecay(0.0, 0.9, begin_step=2, end_step=30, frequency=4)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    compile_model(sparse, jit_compile=jit_compile)
    history = sparse.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert_exact_sparsity(sparse, 0.9)
    report = tfs.sparsity_summary(sparse, print_fn=None)
    assert history.history["sparsity"][-1] == report.global_sparsity
    assert history.history["sparsity"][0] < 0.9


def test_steps_per_execution_still_reaches_the_final_update(rng):
    x, y = data(rng)
    schedule = tfs.PolynomialDecay(0.0, 0.8, begin_step=1, end_step=13, frequency=5)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    compile_model(sparse, steps_per_execution=4)
    sparse.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert_exact_sparsity(sparse, 0.8)


def test_masks_are_computed_only_on_scheduled_steps(rng, monkeypatch):
    x, y = data(rng)
    schedule = tfs.PolynomialDecay(0.0, 0.5, begin_step=3, end_step=20, frequency=5)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    compile_model(sparse)
    calls = []
    original = updates.MaskUpdate.update
    monkeypatch.setattr(
        updates.MaskUpdate, "update", lambda self, step: (calls.append(step), original(self, step))
    )
    sparse.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert calls == [3, 8, 13, 18, 20]


def test_training_without_the_callback_fails_instead_of_training_dense(rng):
    x, y = data(rng)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))
    compile_model(sparse)
    with pytest.raises(Exception, match="SparsityCallback"):
        sparse.fit(x, y, epochs=1, verbose=0)
    # Inference needs nothing. (On JAX, Keras leaves the variables purged
    # when the first training step fails to trace, so only check on TF.)
    if keras.backend.backend() == "tensorflow":
        sparse.predict(x, verbose=0)


def test_custom_loop_with_update_masks(rng):
    x, y = data(rng)
    schedule = tfs.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=12, frequency=3)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    compile_model(sparse)
    updated = []
    for step in range(16):
        if tfs.update_masks(sparse, step):
            updated.append(step)
        batch = slice((step * 16) % 256, (step * 16) % 256 + 16)
        sparse.train_on_batch(x[batch], y[batch])
    assert updated == [0, 3, 6, 9, 12]
    assert_exact_sparsity(sparse, 0.75)


def test_global_scope_prunes_the_total_but_not_uniformly():
    method = tfs.MagnitudePruning(tfs.OneShot(0.7), scope="global")
    sparse = tfs.sparsify(models.sequential(), method)
    assert tfs.update_masks(sparse, 0)
    report = tfs.sparsity_summary(sparse, print_fn=None)
    sizes = [row.size for row in report.layers]
    zeros = sum(row.size - row.nonzero for row in report.layers)
    assert zeros == sum(mask_ops.num_to_prune(0.7, n) for n in sizes)
    assert report.layers[0].sparsity != pytest.approx(report.layers[1].sparsity)
    # Every surviving weight is at least as large as every pruned one.
    live, dead = [], []
    for path, wrapper in tfs.sparse_layers(sparse):
        kernel = ops.convert_to_numpy(wrapper.layer.kernel)
        mask = ops.convert_to_numpy(wrapper.kernels[0].state.mask)
        live.append(np.abs(kernel[mask == 1]))
        dead.append(np.abs(kernel[mask == 0]))
    assert np.concatenate(dead).max() <= np.concatenate(live).min()


def masks_of(model):
    return {
        path: ops.convert_to_numpy(w.kernels[0].state.mask).copy()
        for path, w in tfs.sparse_layers(model)
    }


def test_random_pruning_is_reproducible_and_permanent():
    schedule = tfs.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=4, frequency=1)

    def run(seed):
        keras.utils.set_random_seed(0)
        sparse = tfs.sparsify(models.sequential(), tfs.RandomPruning(schedule, seed=seed))
        history = []
        for step in range(5):
            tfs.update_masks(sparse, step)
            history.append(masks_of(sparse))
        return history

    first, again, other = run(1), run(1), run(2)
    for a, b in zip(first, again):
        for path in a:
            np.testing.assert_array_equal(a[path], b[path])
    assert any((first[-1][p] != other[-1][p]).any() for p in first[-1])
    for earlier, later in zip(first, first[1:]):
        for path in earlier:
            # Pruned weights stay pruned.
            assert np.all(later[path][earlier[path] == 0] == 0)
    for path, mask in first[-1].items():
        assert (mask == 0).sum() == mask_ops.num_to_prune(0.9, mask.size)


def test_magnitude_masks_are_permanent_but_regrowth_lets_weights_return(rng):
    x, y = data(rng)
    results = {}
    for regrowth in (False, True):
        keras.utils.set_random_seed(0)
        schedule = tfs.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=40, frequency=2)
        sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule, regrowth=regrowth))
        compile_model(sparse)
        wrapper = sparse.get_layer("hidden")
        mask_var = wrapper.kernels[0].state.mask
        revived = 0
        previous = np.ones(mask_var.shape)
        for step in range(48):
            tfs.update_masks(sparse, step)
            current = ops.convert_to_numpy(mask_var)
            revived += int(((previous == 0) & (current == 1)).sum())
            previous = current.copy()
            batch = slice((step * 32) % 256, (step * 32) % 256 + 32)
            sparse.train_on_batch(x[batch], y[batch])
        results[regrowth] = revived
        assert (previous == 0).sum() == mask_ops.num_to_prune(0.8, previous.size)
    assert results[False] == 0
    assert results[True] > 0


def _fit_with_callback(rng, model):
    x, y = data(rng, n=64)
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(
        tfs.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=2, frequency=1)))
    compile_model(sparse, jit_compile=False)
    sparse.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    return sparse


def _let_keras_build_the_optimizer(monkeypatch):
    """From now on the callback leaves the optimizer to Keras, which builds
    it while tracing the first step."""
    monkeypatch.setattr(optimizer_state, "build_before_training", lambda model: False)


def test_callback_builds_the_optimizer_as_keras_would(monkeypatch):
    """The optimizer built by the callback before the first step holds the
    same slots, in the same order, and trains to the same weights as the
    one Keras builds itself."""
    keras.utils.set_random_seed(0)
    early = _fit_with_callback(np.random.default_rng(0), models.sequential())
    keras.utils.clear_session()  # The same layer and optimizer names.
    keras.utils.set_random_seed(0)
    _let_keras_build_the_optimizer(monkeypatch)
    lazy = _fit_with_callback(np.random.default_rng(0), models.sequential())
    early_slots, lazy_slots = early.optimizer.variables, lazy.optimizer.variables
    assert [v.path for v in early_slots] == [v.path for v in lazy_slots]
    for a, b in zip(early_slots + early.weights, lazy_slots + lazy.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=a.path)


@pytest.mark.tensorflow
def test_callback_builds_the_optimizer_before_the_training_step_is_traced(rng, monkeypatch):
    """On TensorFlow, Keras without a distribution strategy builds the
    optimizer inside the first traced step, which makes TensorFlow trace it
    twice; the callback builds it first, so no variable is created while
    tracing."""
    import tensorflow as tf

    created_while_tracing = []

    def creator(next_creator, **kwargs):
        if not tf.executing_eagerly():
            created_while_tracing.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        _fit_with_callback(rng, models.sequential())
    assert created_while_tracing == []
    _let_keras_build_the_optimizer(monkeypatch)
    with tf.variable_creator_scope(creator):
        _fit_with_callback(rng, models.sequential())
    assert created_while_tracing  # What the callback avoids.


@pytest.mark.tensorflow
def test_callback_leaves_a_custom_train_step_optimizer_alone(rng):
    """A custom `train_step` may update a subset of the weights: the
    callback then leaves building the optimizer to it (on TensorFlow; the
    other trainers build it before any step)."""
    built_at_first_step = []

    class OwnStep(keras.Model):
        def train_step(self, data):
            built_at_first_step.append(self.optimizer.built)
            return super().train_step(data)

    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(4, name="logits")(keras.layers.Dense(16, name="hidden")(inputs))
    _fit_with_callback(rng, OwnStep(inputs, outputs))
    assert built_at_first_step[0] is False
