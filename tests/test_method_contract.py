"""The contract every sparsity method keeps, run over every entry of
`tfs.METHODS` on both backends: a new method file gets all of it for free.

A method built by `tfs.make_method` must: build its state on every kind of
model; round-trip its config; train with `SparsityCallback` to its target
(scheduled methods exactly; learned ones consistently with what inference
uses); `strip` to the inference outputs; save and load mid-schedule (plain
`.keras` for Sequential models, `tfs.save` for nested wrappers) with its
state; and respect the distribution's dense layers and per-layer targets.
"""

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tests import models

pytestmark = pytest.mark.core

TOTAL_STEPS = 8
NAMES = sorted(tfs.METHODS)


def make(name, sparsity=0.5, **overrides):
    settings = dict(begin_step=0, end_step=4, seed=0)
    if issubclass(tfs.METHODS[name], tfs.PruningMethod):
        settings["frequency"] = 2
    return tfs.make_method(name, sparsity, TOTAL_STEPS, num_examples=64, **settings, **overrides)


def holds_a_target(name):
    """Whether the method's masks reach an exact, given target (pruning and
    dynamic sparse methods; not learned sparsity nor loaded masks)."""
    method = make(name)
    return not method.learned_sparsity and method.final_sparsity is not None


def data(rng, kind="sequential"):
    if kind == "sequential":
        return rng.normal(size=(64, 8)).astype("float32"), rng.normal(size=(64, 4)).astype("float32")
    return rng.normal(size=(16, 5, 6)).astype("float32"), rng.normal(size=(16, 5, 2)).astype("float32")


def train(model, x, y, epochs=2):
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[tfs.SparsityCallback()])


def state_of(model):
    return {
        f"{kernel.path}/{field.name}": ops.convert_to_numpy(getattr(kernel.state, field.name))
        for kernel in tfs.sparse_kernels(model)
        for field in dataclasses.fields(kernel.state)
        if isinstance(getattr(kernel.state, field.name), keras.Variable)
    }


@pytest.mark.parametrize("name", NAMES)
def test_builds_state_on_every_kernel_and_round_trips_its_config(name):
    method = make(name)
    assert type(method).from_config(method.get_config()) == method
    config = keras.saving.serialize_keras_object(method)
    assert keras.saving.deserialize_keras_object(config) == method
    sparse = tfs.sparsify(models.subclassed(), method)
    wrappers = [w for _, w in tfs.sparse_layers(sparse)]
    assert wrappers and all(w.built and w.kernels for w in wrappers)
    assert all(k.state is not None for w in wrappers for k in w.kernels)


@pytest.mark.parametrize("name", NAMES)
def test_trains_to_its_target(name, rng):
    x, y = data(rng)
    sparse = tfs.sparsify(models.sequential(), make(name))
    train(sparse, x, y, epochs=TOTAL_STEPS // 4)
    report = tfs.sparsity_summary(sparse, print_fn=None)
    method_class = tfs.METHODS[name]
    for wrapper_row in (r for r in report.layers if r.wrapped):
        if method_class.learned_sparsity:
            assert 0.0 <= wrapper_row.sparsity < 1.0
        elif not holds_a_target(name):
            # No schedule (FixedMask): masks stay as loaded; none loaded here.
            assert wrapper_row.sparsity == 0.0
        else:
            expected = round(0.5 * wrapper_row.size) / wrapper_row.size
            # Exact in the masks; what inference uses may have a few more
            # zeros (dynamic methods grow weights at zero).
            assert wrapper_row.sparsity >= expected - 1e-9, wrapper_row.path
            if issubclass(method_class, tfs.PruningMethod):
                assert wrapper_row.sparsity == pytest.approx(expected, abs=1e-9), wrapper_row.path
    if holds_a_target(name):
        for key, mask in state_of(sparse).items():
            if key.endswith("/mask"):
                assert np.sum(mask == 0) == round(0.5 * mask.size), key
    # The summary counts what inference uses: the zeros `strip` folds in.
    plain_report = tfs.sparsity_summary(tfs.strip(sparse), print_fn=None)
    assert plain_report.nonzero == report.nonzero


@pytest.mark.parametrize("name", NAMES)
def test_strip_equals_inference(name, rng):
    x, y = data(rng, "subclassed")
    sparse = tfs.sparsify(models.subclassed(), make(name))
    train(sparse, x, y)
    expected = ops.convert_to_numpy(sparse(x, training=False))
    plain = tfs.strip(sparse)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x, training=False)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_keras_save_and_load_mid_schedule(name, rng, tmp_path):
    x, y = data(rng)
    sparse = tfs.sparsify(models.sequential(), make(name))
    train(sparse, x, y, epochs=1)  # Steps 0-3: mid-schedule.
    path = str(tmp_path / "m.keras")
    sparse.save(path)
    loaded = keras.saving.load_model(path)
    assert ops.convert_to_numpy(loaded.optimizer.iterations) == 4
    before, after = state_of(sparse), state_of(loaded)
    assert sorted(before) == sorted(after)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x, training=False)),
        ops.convert_to_numpy(sparse(x, training=False)), rtol=1e-6,
    )
    # Both finish the schedule the same way.
    if make(name).step_schedule is not None:
        for model in (sparse, loaded):
            for step in range(4, TOTAL_STEPS):
                tfs.update_masks(model, step)
        masks = lambda m: {k: v for k, v in state_of(m).items() if k.endswith("/mask")}
        for key, value in masks(sparse).items():
            np.testing.assert_array_equal(value, masks(loaded)[key], err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_tfs_save_and_load_nested_wrappers(name, rng, tmp_path):
    x, y = data(rng, "subclassed")
    sparse = tfs.sparsify(models.subclassed(), make(name))
    train(sparse, x, y, epochs=1)
    path = str(tmp_path / "m.keras")
    tfs.save(sparse, path)
    loaded = tfs.load(path)
    assert sorted(p for p, _ in tfs.sparse_layers(loaded)) == sorted(p for p, _ in tfs.sparse_layers(sparse))
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x, training=False)),
        ops.convert_to_numpy(sparse(x, training=False)), rtol=1e-6,
    )


@pytest.mark.parametrize("name", NAMES)
def test_distribution_dense_layers_and_targets(name, rng):
    x, y = data(rng)
    sparse = tfs.sparsify(models.sequential(), make(name), distribution=tfs.Uniform(dense=["logits"]))
    assert [p for p, _ in tfs.sparse_layers(sparse)] == ["hidden"]
    if not holds_a_target(name):
        return  # Only given targets can be checked.
    sparse = tfs.sparsify(
        models.sequential(), make(name), distribution=tfs.Uniform(targets={"logits": 0.25})
    )
    train(sparse, x, y, epochs=TOTAL_STEPS // 4)
    rows = {r.path: r for r in tfs.sparsity_summary(sparse, print_fn=None).layers}
    assert rows["logits"].sparsity == pytest.approx(round(0.25 * 64) / 64)
    assert rows["hidden"].sparsity == pytest.approx(0.5)


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", NAMES)
def test_trains_and_strips_under_mixed_float16(name, rng, mixed_float16):
    x, y = data(rng)
    model = models.sequential()
    assert model.get_layer("hidden").compute_dtype == "float16"
    sparse = tfs.sparsify(model, make(name))
    train(sparse, x, y, epochs=TOTAL_STEPS // 4)
    for kernel in tfs.sparse_kernels(sparse):
        assert kernel.variable.dtype == "float32"  # Variables stay float32.
    outputs = ops.convert_to_numpy(sparse(x, training=False))
    assert np.all(np.isfinite(outputs))
    if holds_a_target(name):
        for key, mask in state_of(sparse).items():
            if key.endswith("/mask"):
                assert np.sum(mask == 0) == round(0.5 * mask.size), key
    plain = tfs.strip(sparse)
    np.testing.assert_allclose(
        ops.convert_to_numpy(plain(x, training=False)).astype("float32"),
        outputs.astype("float32"), rtol=1e-6, atol=1e-6,
    )
