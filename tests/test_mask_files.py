"""Mask files and fixed masks: the basis of the lottery-ticket and
train-from-scratch experiments."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tests import models

pytestmark = pytest.mark.core


def pruned_model(rng, sparsity=0.75):
    model = models.sequential()
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")
    schedule = tfs.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=4, frequency=2)
    tfs.sparsify(model, tfs.MagnitudePruning(schedule))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[tfs.SparsityCallback()])
    return model, x, y


def masks_of(model):
    return {
        path: ops.convert_to_numpy(w.kernels[0].state.mask)
        for path, w in tfs.sparse_layers(model)
    }


def test_masks_round_trip_into_a_fixed_mask_model_and_stay_through_training(rng, tmp_path):
    pruned, x, y = pruned_model(rng)
    path = tfs.save_masks(pruned, tmp_path / "masks", run={"model_dir": "runs/mp75"})
    assert path.endswith(".npz")
    masks, meta = tfs.read_masks(path)
    assert sorted(masks) == ["hidden/kernel", "logits/kernel"]
    assert meta["kernels"]["hidden/kernel"]["sparsity"] == pytest.approx(0.75)
    assert meta["method"] == ["MagnitudePruning"] and meta["run"] == {"model_dir": "runs/mp75"}

    fresh = tfs.sparsify(models.sequential(), tfs.FixedMask())
    assert tfs.sparsity_summary(fresh, print_fn=None).global_sparsity == 0.0  # Dense until loaded.
    tfs.load_masks(fresh, path)
    expected = masks_of(pruned)
    for key, value in masks_of(fresh).items():
        np.testing.assert_array_equal(value, expected[key])
    fresh.compile(keras.optimizers.Adam(1e-2), "mse")
    fresh.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[tfs.SparsityCallback()])
    for key, value in masks_of(fresh).items():
        np.testing.assert_array_equal(value, expected[key])  # Never changed.
    plain = tfs.strip(fresh)
    for path_, wrapper in tfs.sparse_layers(fresh):
        kernel = ops.convert_to_numpy(plain.get_layer(path_).kernel)
        assert not kernel[expected[path_] == 0].any()  # Pruned weights exactly zero.


def test_mismatches_name_the_layers(rng, tmp_path):
    pruned, _, _ = pruned_model(rng)
    path = tfs.save_masks(pruned, tmp_path / "m.npz")
    other = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, name="hidden"), keras.layers.Dense(5, name="out")]
    )
    tfs.sparsify(other, tfs.FixedMask())
    with pytest.raises(ValueError, match=r"not in the file: out/kernel.*not in the model: logits/kernel"):
        tfs.load_masks(other, path)
    wider = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")]
    )
    tfs.sparsify(wider, tfs.FixedMask())
    with pytest.raises(ValueError, match=r"shapes differ: hidden/kernel \(model \(8, 32\), file \(8, 16\)\)"):
        tfs.load_masks(wider, path)


def test_learned_sparsity_has_no_masks_to_save(tmp_path):
    model = tfs.sparsify(models.sequential(), tfs.VariationalDropout(0.01))
    with pytest.raises(ValueError, match=r"hidden \(VariationalDropout\).*FixedMask"):
        tfs.save_masks(model, tmp_path / "m.npz")


def test_a_file_that_is_not_a_mask_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a tf_sparsity mask file"):
        tfs.read_masks(bad)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        tfs.read_masks(tmp_path / "missing.npz")


def test_shuffled_masks_keep_each_kernels_sparsity_but_not_its_positions(rng, tmp_path):
    pruned, _, _ = pruned_model(rng)
    path = tfs.save_masks(pruned, tmp_path / "m.npz")
    model = tfs.sparsify(models.sequential(), tfs.FixedMask())
    tfs.load_masks(model, path, shuffle_seed=3)
    expected = masks_of(pruned)
    for key, value in masks_of(model).items():
        assert (value == 0).sum() == (expected[key] == 0).sum()
        assert (value != expected[key]).any()


def test_masks_with_values_other_than_0_and_1_are_refused_naming_the_kernel(tmp_path):
    model = tfs.sparsify(models.sequential(), tfs.FixedMask())
    path = tfs.save_masks(model, tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    rng = np.random.default_rng(0)
    # 0/1 as floats is a mask; fractions would scale the weights.
    arrays["logits/kernel"] = (rng.random((16, 4)) > 0.5).astype("float32")
    fractional = dict(arrays, **{"hidden/kernel": np.full((8, 16), 0.5, "float32")})
    np.savez(tmp_path / "fractional.npz", **fractional)
    with pytest.raises(ValueError, match=r"values other than 0 and 1: hidden/kernel \(float32\)\.$"):
        tfs.load_masks(model, tmp_path / "fractional.npz")
    assert all(value.all() for value in masks_of(model).values())  # Nothing loaded.
    np.savez(tmp_path / "binary.npz", **arrays)
    tfs.load_masks(model, tmp_path / "binary.npz")
    np.testing.assert_array_equal(masks_of(model)["logits"], arrays["logits/kernel"])
