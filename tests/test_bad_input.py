"""Bad input a new user gives: each a clear error naming the culprit."""

import keras
import numpy as np
import pytest

import tf_sparsity as tfs
from tests import models


def schedule():
    return tfs.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2)


@pytest.mark.core
@pytest.mark.parametrize(
    "make",
    [
        lambda: tfs.PolynomialDecay(np.float32(0.0), np.float64(0.5), np.int64(0), np.int32(10), np.int64(2)),
        lambda: tfs.ConstantSparsity(np.float32(0.5), begin_step=np.int64(3)),
        lambda: tfs.OneShot(np.float64(0.3), step=np.int64(1)),
        lambda: tfs.Ramp(np.int64(0), np.int64(5)),
        lambda: tfs.RandomPruning(schedule(), seed=np.int64(4)),
        lambda: tfs.VariationalDropout(np.float32(0.01), threshold=np.float32(2.0)),
    ],
)
def test_numpy_scalars_are_accepted(make):
    made = make()
    config = made.get_config()
    # Stored as Python numbers, so configs stay JSON-serializable.
    import json

    json.dumps(keras.saving.serialize_keras_object(made))
    assert config


@pytest.mark.core
@pytest.mark.parametrize(
    "make, culprit",
    [
        (lambda: tfs.PolynomialDecay(0.0, 0.9, 0, 10, 2, exponent="3"), "exponent"),
        (lambda: tfs.RandomPruning(schedule(), seed="x"), "seed"),
        (lambda: tfs.VariationalDropout(0.1, seed="x"), "seed"),
        (lambda: tfs.VariationalDropout(0.1, ramp=5), "ramp"),
        (lambda: tfs.L0Regularization(0.1, ramp=5), "ramp"),
        (lambda: tfs.MagnitudePruning(schedule(), regrowth="no"), "regrowth"),
        (lambda: tfs.VariationalDropout("0.1"), "kl_weight"),
        (lambda: tfs.L0Regularization(None), "l0_weight"),
    ],
)
def test_wrong_types_name_the_argument(make, culprit):
    with pytest.raises(TypeError, match=culprit):
        make()


@pytest.mark.core
@pytest.mark.parametrize(
    "make, culprit",
    [
        (lambda: tfs.PolynomialDecay(0.9, 0.1, 0, 10, 2), "initial_sparsity"),
        (lambda: tfs.VariationalDropout(0.1, log_sigma2_init=float("nan")), "log_sigma2_init"),
        (lambda: tfs.L0Regularization(0.1, log_alpha_init=float("inf")), "log_alpha_init"),
        (lambda: tfs.VariationalDropout(0.1, clip_alpha=0), "clip_alpha"),
        (lambda: tfs.PolynomialDecay(0.0, 0.9, 0, 10, 2, exponent=0), "exponent"),
    ],
)
def test_bad_values_name_the_argument(make, culprit):
    with pytest.raises(ValueError, match=culprit):
        make()


@pytest.mark.core
def test_update_masks_names_a_bad_step():
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule()))
    with pytest.raises(TypeError, match="step"):
        tfs.update_masks(sparse, "abc")
    with pytest.raises(TypeError, match="step"):
        tfs.update_masks(sparse, 1.5)
    assert tfs.update_masks(sparse, np.int64(0))


@pytest.mark.core
def test_layers_empty_list_says_so():
    with pytest.raises(ValueError, match=r"layers=\[\]"):
        tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule()), layers=[])


@pytest.mark.core
def test_uniform_that_keeps_every_layer_dense_is_an_error():
    with pytest.raises(ValueError, match="dense"):
        tfs.sparsify(
            models.sequential(),
            tfs.MagnitudePruning(schedule()),
            distribution=tfs.Uniform(dense=["hidden", "logits"]),
        )


@pytest.mark.core
def test_a_single_built_layer_is_wrapped():
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    wrapped = tfs.sparsify(layer, tfs.MagnitudePruning(tfs.OneShot(0.5)))
    assert isinstance(wrapped, tfs.SparseWrapper) and wrapped.layer is layer
    tfs.update_masks(wrapped, 0)
    kernel = keras.ops.convert_to_numpy(wrapped.inference_kernels()["kernel"])
    assert (kernel == 0).sum() == 6


@pytest.mark.core
def test_sparsify_changes_the_model_wholly_in_place():
    model = models.functional_with_nested()
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule()))
    assert sparse is model
    # Nested and top-level layers alike are sparse: nothing half-changed.
    assert {p for p, _ in tfs.sparse_layers(model)} == {"first", "inner_model/inner_dense", "head"}
    with pytest.raises(ValueError, match="already sparse"):
        tfs.sparsify(model, tfs.MagnitudePruning(schedule()))


@pytest.mark.core
def test_training_without_the_callback_still_raises_on_the_same_model():
    model = models.sequential()
    tfs.sparsify(model, tfs.MagnitudePruning(schedule()))
    model.compile("adam", "mse")
    x = np.zeros((8, 8), "float32")
    with pytest.raises(RuntimeError, match="SparsityCallback"):
        model.fit(x, np.zeros((8, 4)), verbose=0)


@pytest.mark.core
def test_sparsity_callback_on_a_dense_model_is_an_error():
    model = models.sequential()
    model.compile("adam", "mse")
    x = np.zeros((8, 8), "float32")
    with pytest.raises(ValueError, match="no sparse layer"):
        model.fit(x, np.zeros((8, 4)), verbose=0, callbacks=[tfs.SparsityCallback()])


@pytest.mark.core
def test_strip_of_a_non_model_names_it():
    with pytest.raises(TypeError, match="strip expects a Keras model"):
        tfs.strip(np.zeros(3))


@pytest.mark.tensorflow
def test_export_refuses_bad_targets(tmp_path):
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(tfs.OneShot(0.5)))
    tfs.update_masks(sparse, 0)
    with pytest.raises(TypeError, match="export_saved_model expects a Keras model"):
        tfs.export_saved_model("model.keras", str(tmp_path / "e"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        tfs.export_saved_model(sparse, str(a_file))
    target = tmp_path / "export" / "1"
    target.mkdir(parents=True)
    (target / "foreign.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tfs.export_saved_model(sparse, str(target))
    assert (target / "foreign.txt").exists()
    tfs.export_saved_model(sparse, str(target), overwrite=True)
    assert not (target / "foreign.txt").exists()
    assert (target / "saved_model.pb").exists()


@pytest.mark.tensorflow
def test_sparsity_callback_log_dir_that_is_a_file(tmp_path):
    a_file = tmp_path / "logs"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="log_dir"):
        tfs.SparsityCallback(log_dir=str(a_file))


def test_demo_flags_are_checked_before_any_work(capsys):
    from tf_sparsity_models import cli

    for argv, culprit in [
        (["demo", "--sparsity", "1.5"], "--sparsity"),
        (["demo", "--epochs", "-1"], "--epochs"),
        (["demo", "--batch_size", "0"], "--batch_size"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and culprit in err[0]


def test_sweep_print_refuses_an_unknown_method(tmp_path, capsys):
    from tf_sparsity_models import cli

    spec = tmp_path / "spec.json"
    spec.write_text('{"task": "resnet50", "methods": ["magnitud"], "sparsities": [0.9]}')
    code = cli.main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--print"])
    assert code == 2
    assert "magnitud" in capsys.readouterr().err


def test_train_refuses_a_data_dir_with_synthetic_data(tmp_path, capsys):
    from tf_sparsity_models import cli

    code = cli.main(
        ["train", "--task", "resnet50", "--config", "tiny", "--model_dir", str(tmp_path / "m"),
         "--data_dir", str(tmp_path / "missing")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--data_dir" in err and "synthetic" in err


class _BranchingMagnitude(tfs.MagnitudePruning):
    def drop_scores(self, kernel, mask, seed):
        if keras.ops.mean(kernel) > 0:  # Python control flow on a tensor.
            return keras.ops.abs(kernel)
        return -keras.ops.abs(kernel)


class _BranchingSET(tfs.SET):
    def drop_scores(self, kernel, mask, seed):
        if keras.ops.max(kernel) > 0:
            return keras.ops.abs(kernel)
        return -keras.ops.abs(kernel)


@pytest.mark.core
@pytest.mark.parametrize(
    "method",
    [
        lambda: _BranchingMagnitude(tfs.ConstantSparsity(0.5, frequency=1)),
        lambda: _BranchingSET(0.5, update_frequency=1, end_step=10, seed=0),
    ],
    ids=["pruning", "dynamic_sparse"],
)
def test_a_drop_score_branching_on_a_tensor_is_an_error_naming_the_method(method):
    model = tfs.sparsify(models.sequential(), method())
    name = type(model.layers[0].method).__name__
    masks = [keras.ops.convert_to_numpy(k.state.mask) for k in tfs.sparse_kernels(model)]
    with pytest.raises(TypeError, match=rf"{name}'s mask update .* `if` on a tensor.*keras.ops.where"):
        tfs.update_masks(model, 1)
    for kernel, before in zip(tfs.sparse_kernels(model), masks):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel.state.mask), before)
