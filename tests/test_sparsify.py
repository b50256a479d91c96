import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import tf_sparsity as tfs
from tests import models

pytestmark = pytest.mark.core


def magnitude(sparsity=0.5):
    return tfs.MagnitudePruning(tfs.ConstantSparsity(sparsity, frequency=1))


def wrapped_paths(model):
    return sorted(path for path, _ in tfs.sparse_layers(model))


def test_sequential_wraps_dense_layers_and_keeps_weights(rng):
    model = models.sequential()
    x = rng.normal(size=(4, 8)).astype("float32")
    before = ops.convert_to_numpy(model(x))
    hidden = model.get_layer("hidden")
    sparse = tfs.sparsify(model, magnitude())
    assert sparse is model  # Changed in place, wholly.
    assert wrapped_paths(sparse) == ["hidden", "logits"]
    assert isinstance(sparse.get_layer("bn"), layers.BatchNormalization)
    # Masks start as ones: same outputs, same trained weights.
    np.testing.assert_allclose(ops.convert_to_numpy(sparse(x)), before, rtol=1e-6)
    assert sparse.get_layer("hidden").layer is hidden


def test_nested_functional_models_are_reached(rng):
    model = models.functional_with_nested()
    sparse = tfs.sparsify(model, magnitude())
    assert wrapped_paths(sparse) == ["first", "head", "inner_model/inner_dense"]
    x = rng.normal(size=(2, 8)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(sparse(x)), ops.convert_to_numpy(model(x)), rtol=1e-6
    )


def test_subclassed_model_custom_layers_and_attention_projections_are_reached(rng):
    model = models.subclassed()
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    before = ops.convert_to_numpy(model(x))
    sparse = tfs.sparsify(model, magnitude())
    assert sparse is model  # Subclassed models are rewired in place.
    paths = wrapped_paths(sparse)
    assert "subclassed/embed" not in paths  # paths omit the root
    assert "embed" in paths and "out" in paths
    assert "block_0/up" in paths and "block_1/down" in paths
    for projection in ("query", "key", "value", "attention_output"):
        assert f"attention/{projection}" in paths
    assert len(paths) == 2 + 2 * 2 + 4
    assert isinstance(model.blocks[0].up, tfs.SparseWrapper)
    assert isinstance(model.attention._query_dense, tfs.SparseWrapper)
    # Weights are tracked once: kernels, biases, norms and masks.
    num_kernels = len(paths)
    masks = [v for v in sparse.weights if v.path.endswith("_mask")]
    assert len(masks) == num_kernels
    assert len({id(v) for v in sparse.weights}) == len(sparse.weights)
    np.testing.assert_allclose(ops.convert_to_numpy(sparse(x)), before, rtol=1e-5, atol=1e-6)


def test_custom_layers_inside_functional_models_are_reached(rng):
    model = models.functional_with_attention()
    sparse = tfs.sparsify(model, magnitude())
    paths = wrapped_paths(sparse)
    assert "mha/query" in paths and "block/up" in paths and "proj" in paths
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(sparse(x)), ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6
    )


def test_resnet50_has_54_sparsifiable_layers_with_first_conv_dense():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    sparse = tfs.sparsify(
        model, magnitude(0.9), distribution=tfs.Uniform(dense=["conv1_conv"])
    )
    paths = wrapped_paths(sparse)
    assert len(paths) == 53
    assert "conv1_conv" not in paths and "predictions" in paths
    report = tfs.sparsity_summary(sparse, print_fn=None)
    assert len(report.layers) == 54


def test_selection_by_name_regex_and_type():
    model = models.subclassed()
    sparse = tfs.sparsify(model, magnitude(), layers=["embed", r"block_\d/up", layers.EinsumDense])
    paths = wrapped_paths(sparse)
    assert paths == sorted(
        ["embed", "block_0/up", "block_1/up"]
        + [f"attention/{p}" for p in ("query", "key", "value", "attention_output")]
    )


def test_selecting_an_unsupported_layer_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'bn'.*BatchNormalization"):
        tfs.sparsify(models.sequential(), magnitude(), layers=["hidden", "bn"])


def test_selector_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="'nope'"):
        tfs.sparsify(models.sequential(), magnitude(), layers=["nope"])
    with pytest.raises(ValueError, match="'nope'.*hidden"):
        tfs.sparsify(models.sequential(), magnitude(), distribution=tfs.Uniform(dense=["nope"]))


def test_sparsifying_a_sparse_model_is_an_error():
    sparse = tfs.sparsify(models.sequential(), magnitude())
    with pytest.raises(ValueError, match="already sparse.*hidden"):
        tfs.sparsify(sparse, magnitude())


def test_unbuilt_model_is_an_error():
    model = keras.Sequential([layers.Dense(3), layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        tfs.sparsify(model, magnitude())
    with pytest.raises(TypeError, match="MagnitudePruning"):
        tfs.sparsify(models.sequential(), "magnitude")


def test_layers_kept_dense_by_the_distribution_are_not_wrapped():
    sparse = tfs.sparsify(
        models.sequential(), magnitude(), distribution=tfs.Uniform(dense=["logits"])
    )
    assert wrapped_paths(sparse) == ["hidden"]
