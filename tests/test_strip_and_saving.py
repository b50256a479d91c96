import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tests import models

pytestmark = pytest.mark.core


def schedule():
    return tfs.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=6, frequency=2)


def train_a_little(model, x, y, steps=4):
    for step in range(steps):
        tfs.update_masks(model, step)
        model.train_on_batch(x, y)


def masks_of(model):
    return {kernel.path: ops.convert_to_numpy(kernel.state.mask) for kernel in tfs.sparse_kernels(model)}


def assert_plain(model):
    for layer in model._flatten_layers():
        assert not isinstance(layer, tfs.SparseWrapper), layer.name
    assert not [v.path for v in model.weights if v.path.endswith("_mask")]


def build_case(kind, rng):
    if kind == "sequential":
        model = models.sequential()
        x = rng.normal(size=(32, 8)).astype("float32")
        y = rng.normal(size=(32, 4)).astype("float32")
    elif kind == "functional_attention":
        model = models.functional_with_attention()
        x = rng.normal(size=(8, 5, 6)).astype("float32")
        y = rng.normal(size=(8, 5, 2)).astype("float32")
    else:
        model = models.subclassed()
        x = rng.normal(size=(8, 5, 6)).astype("float32")
        y = rng.normal(size=(8, 5, 2)).astype("float32")
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule()))
    sparse.compile(keras.optimizers.Adam(1e-2), "mse")
    return sparse, x, y


KINDS = ["sequential", "functional_attention", "subclassed"]


@pytest.mark.parametrize("kind", KINDS)
def test_strip_gives_a_plain_model_with_equal_outputs(kind, rng):
    sparse, x, y = build_case(kind, rng)
    train_a_little(sparse, x, y)
    expected = ops.convert_to_numpy(sparse(x))
    plain = tfs.strip(sparse)
    assert_plain(plain)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x)), expected, rtol=1e-5, atol=1e-6)
    sparse_report = tfs.sparsity_summary(sparse, print_fn=None)
    plain_report = tfs.sparsity_summary(plain, print_fn=None)
    assert plain_report.nonzero == sparse_report.nonzero
    assert sparse_report.global_sparsity > 0.5
    # The sparse model is untouched and keeps training.
    train_a_little(sparse, x, y, steps=2)
    assert tfs.sparse_layers(sparse)


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_mid_schedule_restores_masks_weights_and_optimizer(kind, rng, tmp_path):
    sparse, x, y = build_case(kind, rng)
    train_a_little(sparse, x, y, steps=3)
    path = tmp_path / "model.keras"
    tfs.save(sparse, path)
    restored = tfs.load(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(sparse(x)), rtol=1e-6, atol=1e-6
    )
    before, after = masks_of(sparse), masks_of(restored)
    assert before.keys() == after.keys() and before
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert int(ops.convert_to_numpy(restored.optimizer.iterations)) == 3
    # Both continue the same schedule to the same masks.
    for model in (sparse, restored):
        for step in range(3, 8):
            tfs.update_masks(model, step)
            model.train_on_batch(x, y)
    for key, value in masks_of(sparse).items():
        np.testing.assert_array_equal(value, masks_of(restored)[key])


def test_plain_keras_saving_works_for_sequential_and_functional_models(rng, tmp_path):
    sparse, x, y = build_case("sequential", rng)
    train_a_little(sparse, x, y)
    path = tmp_path / "seq.keras"
    sparse.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.get_layer("hidden"), tfs.SparseWrapper)
    np.testing.assert_allclose(ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(sparse(x)), rtol=1e-6)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        tfs.load(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="bad.keras"):
        tfs.load(bad)
