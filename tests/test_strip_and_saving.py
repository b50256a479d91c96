import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest
from keras import layers
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


@keras.saving.register_keras_serializable(package="tf_sparsity_tests")
class Stages(keras.Model):
    """Layers in nested lists (a common stage/block layout)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stages = [
            [layers.Dense(8, activation="relu", name="a"), layers.Dense(8, name="b")],
            [layers.Dense(2, name="c")],
        ]

    def call(self, x):
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
        return x


def sparse_stages(rng):
    model = Stages()
    x = rng.normal(size=(4, 6)).astype("float32")
    model(x)
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, frequency=1)))
    tfs.update_masks(model, 0)
    return model, x


def edit_record(path, edit):
    """Rewrites the tf_sparsity.json entry of a .keras file with `edit`."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    record = json.loads(entries["tf_sparsity.json"])
    edit(record)
    entries["tf_sparsity.json"] = json.dumps(record).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_save_and_load_a_model_with_sparse_layers_in_nested_lists(rng, tmp_path):
    model, x = sparse_stages(rng)
    path = tmp_path / "stages.keras"
    tfs.save(model, path)
    restored = tfs.load(path)
    assert [p for p, _ in tfs.sparse_layers(restored)] == ["a", "b", "c"]
    assert isinstance(restored.stages[1][0], tfs.SparseWrapper)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


def test_load_reads_the_tensorflow_key_paths_of_format_2_files(rng, tmp_path):
    """Format 2 files written on TensorFlow spell attribute steps as items of
    TensorFlow's own record of attributes."""
    sparse, x, y = build_case("subclassed", rng)
    train_a_little(sparse, x, y, steps=3)
    path = tmp_path / "old.keras"
    tfs.save(sparse, path)

    def old_spelling(record):
        record["version"] = 2
        for wrapper in record["wrappers"]:
            wrapper["key_path"] = [
                ["item", "_self_unconditional_dependency_names", step[1]]
                if step[0] == "attr"
                else step
                for step in wrapper["key_path"]
            ]
        assert ["item", "_self_unconditional_dependency_names", "embed"] in [
            step for wrapper in record["wrappers"] for step in wrapper["key_path"]
        ]

    edit_record(path, old_spelling)
    restored = tfs.load(path)
    assert [p for p, _ in tfs.sparse_layers(restored)] == [p for p, _ in tfs.sparse_layers(sparse)]
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(sparse(x)), rtol=1e-6, atol=1e-6
    )
    # The same spelling in a file of today's format names no layer.
    edit_record(path, lambda record: record.update(version=3))
    with pytest.raises(ValueError, match="_self_unconditional_dependency_names"):
        tfs.load(path)


def test_load_refuses_format_2_records_of_layers_in_nested_lists(rng, tmp_path):
    """Format 2 recorded them as 'tracked' steps, and those models computed
    with their dense layers: loading them as sparse would change outputs."""
    model, _ = sparse_stages(rng)
    path = tmp_path / "stages.keras"
    tfs.save(model, path)

    def old_steps(record):
        record["version"] = 2
        for index, wrapper in enumerate(record["wrappers"]):
            wrapper["key_path"] = [["tracked", index]]

    edit_record(path, old_steps)
    with pytest.raises(ValueError, match=r"no layer at \[\['tracked', 0\]\].*sparsify the model again"):
        tfs.load(path)


_CROSS_BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    import tf_sparsity as tfs
    from tests import models

    mode, path = sys.argv[1], sys.argv[2]
    x = np.random.default_rng(0).normal(size=(4, 5, 6)).astype("float32")
    if mode == "save":
        keras.utils.set_random_seed(0)
        model = models.subclassed()
        tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, frequency=1)))
        tfs.update_masks(model, 0)
        tfs.save(model, path)
        np.save(path + ".npy", keras.ops.convert_to_numpy(model(x)))
    else:
        model = tfs.load(path)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(x)), np.load(path + ".npy"), rtol=1e-5, atol=1e-5
        )
    print(json.dumps([keras.backend.backend(), [p for p, _ in tfs.sparse_layers(model)]]))
    """
)


@pytest.mark.tensorflow
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")
@pytest.mark.parametrize("writer, reader", [("tensorflow", "jax"), ("jax", "tensorflow")])
def test_a_file_saved_on_one_backend_loads_on_the_other(writer, reader, tmp_path):
    path = str(tmp_path / "model.keras")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = []
    for backend, mode in [(writer, "save"), (reader, "load")]:
        result = subprocess.run(
            [sys.executable, "-c", _CROSS_BACKEND_SCRIPT, mode, path],
            capture_output=True,
            text=True,
            cwd=root,
            env=dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=root),
        )
        assert result.returncode == 0, f"{mode} on {backend}:\n{result.stderr[-4000:]}"
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    (saved_on, saved), (loaded_on, loaded) = runs
    assert (saved_on, loaded_on) == (writer, reader)
    assert loaded == saved and len(saved) == 10

