"""`tfs.export_litert`: sparse weights in the `.tflite` file, same outputs."""

import importlib.util

import keras
import numpy as np
import pytest

import tf_sparsity as tfs
from tests.litert_runner import run_tflite

pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.skipif(
        importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert"
    ),
]


def pruned_mlp(structure, rng, target=0.9):
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu", name="fc1"),
            keras.layers.Dense(96, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    schedule = tfs.PolynomialDecay(0.0, target, begin_step=0, end_step=1, frequency=1)
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule, structure=structure), layers=["fc1", "fc2"])
    for layer in sparse.layers:
        for weight in layer.weights:
            if "mask" not in weight.path:
                weight.assign(rng.normal(size=weight.shape, scale=0.3).astype("float32"))
    tfs.update_masks(sparse, 1)
    return sparse


def sparse_tensors(path):
    """Names of the tensors the flatbuffer stores with sparsity parameters."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return {
        t.name.decode(): t.sparsity for g in model.subgraphs for t in g.tensors if t.sparsity is not None
    }


def test_block_pruned_kernels_are_stored_block_sparse_and_outputs_match(tmp_path, rng):
    sparse = pruned_mlp(tfs.Block((1, 4)), rng)
    x = rng.normal(size=(16, 64)).astype("float32")
    report = tfs.export_litert(sparse, tmp_path / "model.tflite", print_fn=None)

    assert [(k.layer, k.storage) for k in report.kernels] == [
        ("fc1", "block-sparse 1x4"),
        ("fc2", "block-sparse 1x4"),
    ]
    assert all(k.block_sparse and abs(k.sparsity - 0.9) < 0.01 for k in report.kernels)
    stored = sparse_tensors(report.path)
    assert {k.tensor for k in report.kernels} == set(stored)
    for parameters in stored.values():
        assert list(parameters.blockMap) == [1]  # blocks along the input axis
    assert report.size_bytes == (tmp_path / "model.tflite").stat().st_size
    # Float32 sums in a different order: equal to a few ulps.
    np.testing.assert_allclose(run_tflite(report.path, x), sparse.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert "block-sparse 1x4" in report.table()


def test_unstructured_kernels_are_stored_compressed_but_densified(tmp_path, rng):
    sparse = pruned_mlp(tfs.Unstructured(), rng)
    x = rng.normal(size=(4, 64)).astype("float32")
    report = tfs.export_litert(sparse, tmp_path / "model.tflite", print_fn=None)
    assert [k.storage for k in report.kernels] == ["sparse, densified"] * 2
    np.testing.assert_allclose(run_tflite(report.path, x), sparse.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_int8_export_runs_with_1x16_blocks(tmp_path, rng):
    sparse = pruned_mlp(tfs.Block((1, 16)), rng)
    x = rng.normal(size=(64, 64)).astype("float32")
    report = tfs.export_litert(sparse, tmp_path / "int8.tflite", quantize="int8", representative_data=x, print_fn=None)
    assert [k.storage for k in report.kernels] == ["block-sparse 1x16"] * 2
    expected = sparse.predict(x, verbose=0)
    got = run_tflite(report.path, x)
    # int8: a quantization step of the output range.
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9


def test_bad_arguments(tmp_path, rng):
    sparse = pruned_mlp(tfs.Block((1, 4)), rng)
    with pytest.raises(ValueError, match="end with '.tflite'"):
        tfs.export_litert(sparse, tmp_path / "model.bin")
    with pytest.raises(ValueError, match="quantize"):
        tfs.export_litert(sparse, tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(ValueError, match="representative_data"):
        tfs.export_litert(sparse, tmp_path / "m.tflite", quantize="int8")
    # The live model is unchanged by an export.
    assert len(tfs.sparse_layers(sparse)) == 2


def test_convolutions_have_no_sparse_kernel_and_unnamed_tensors_are_matched(tmp_path, rng):
    model = keras.Sequential(
        [
            keras.Input((10, 10, 8)),
            keras.layers.Conv2D(16, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, name="fc"),  # Its tensor loses its name scope.
        ]
    )
    schedule = tfs.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1, frequency=1)
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule, structure=tfs.Block((1, 4))))
    tfs.update_masks(sparse, 1)
    report = tfs.export_litert(sparse, tmp_path / "conv.tflite", print_fn=None)
    assert [(k.layer, k.op, k.storage) for k in report.kernels] == [
        ("conv", "CONV_2D", "sparse, densified"),
        ("fc", "FULLY_CONNECTED", "block-sparse 1x4"),
    ]
    x = rng.normal(size=(2, 10, 10, 8)).astype("float32")
    np.testing.assert_allclose(run_tflite(report.path, x), sparse.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
