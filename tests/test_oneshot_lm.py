"""One-shot pruning of a keras-hub causal LM, end to end.

A tiny GPT-2 (random init) is trained for a few hundred steps on Python's
own source files read as bytes, so its weights mean something, and given a
few large activation features the way big LLMs develop them (LayerNorm
outputs scaled up, the weights reading them scaled down: the same function,
see `add_outlier_features`), which is what Wanda's edge over magnitude
rests on. Then each method prunes it at 50% and 2:4.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tests.test_real_models import serve_in_fresh_process
from tf_sparsity_models.oneshot import perplexity as perplexity_lib

keras_hub = pytest.importorskip("keras_hub")

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

LENGTH = 32
OUTLIERS = (3, 7, 17, 22, 33, 40, 51, 60)
OUTLIER_SCALE = 30.0


def python_source_bytes():
    stdlib = sysconfig.get_paths()["stdlib"]
    files = ("argparse.py", "textwrap.py", "string.py", "shlex.py", "fnmatch.py")
    return b"".join(open(os.path.join(stdlib, name), "rb").read() for name in files)


def windows(data, length):
    count = len(data) // length
    return data[: count * length].reshape(count, length)


def inputs(token_ids):
    return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}


def tiny_gpt2():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=256, num_layers=2, num_heads=4, hidden_dim=64,
        intermediate_dim=256, max_sequence_length=LENGTH, dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def add_outlier_features(model):
    """Scales features `OUTLIERS` of every pre-attention and pre-FFN
    LayerNorm output up and the rows of the projections that read them down
    by the same factor: the model computes the same function, but those
    inputs are now large and their weights small (magnitude pruning's blind
    spot, which Wanda and SparseGPT see through)."""
    for block in model.backbone.transformer_layers:
        attention = block._self_attention_layer
        pairs = [
            (block._self_attention_layer_norm, [attention._query_dense, attention._key_dense, attention._value_dense]),
            (block._feedforward_layer_norm, [block._feedforward_intermediate_dense]),
        ]
        for norm, readers in pairs:
            for weight in (norm.gamma, norm.beta):
                value = ops.convert_to_numpy(weight).copy()
                value[list(OUTLIERS)] *= OUTLIER_SCALE
                weight.assign(value)
            for reader in readers:
                kernel = ops.convert_to_numpy(reader.kernel).copy()
                kernel[list(OUTLIERS)] /= OUTLIER_SCALE
                reader.kernel.assign(kernel)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(path of the trained model, calibration windows, held-out windows)."""
    keras.utils.set_random_seed(0)
    data = np.frombuffer(python_source_bytes(), dtype=np.uint8).astype("int32")
    all_windows = windows(data, LENGTH + 1)
    np.random.default_rng(0).shuffle(all_windows)
    train, held_out = all_windows[:-96], all_windows[-96:]
    model = tiny_gpt2()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(inputs(train[:, :-1]), train[:, 1:], batch_size=32, epochs=2, verbose=0)
    held_out_inputs = inputs(held_out[:, :-1])
    before = ops.convert_to_numpy(model(held_out_inputs))
    add_outlier_features(model)
    np.testing.assert_allclose(ops.convert_to_numpy(model(held_out_inputs)), before, rtol=1e-3, atol=1e-3)
    # Saved without its optimizer: a pretrained model as users get it.
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    path = tmp_path_factory.mktemp("tiny_gpt2") / "tiny_gpt2.keras"
    model.save(path)
    calibration = train[:64, :LENGTH]
    return path, calibration, held_out


_LOADED = {}


def load(path):
    """A fresh copy of the saved model (its weights read from disk once)."""
    if path not in _LOADED:
        _LOADED[path] = keras.saving.load_model(path).get_weights()
    model = tiny_gpt2()
    model.set_weights(_LOADED[path])
    return model


def reconstruction_error(dense, pruned, calibration):
    """Sum over the first block's pruned layers of ||X W - X W'||_F, X the
    layer's inputs in the dense model (the same for every method)."""
    block_dense = dense.backbone.transformer_layers[0]
    block_pruned = pruned.backbone.transformer_layers[0]
    wrappers = {w.layer.name: w for _, w in tfs.sparse_layers(block_pruned)}
    captured = {}
    originals = {}
    for layer in (node for node in _linear_layers(block_dense)):
        originals[layer.name] = layer.call

        def capture(x, *args, _layer=layer, **kwargs):
            captured[_layer.name] = ops.convert_to_numpy(x)
            return originals[_layer.name](x, *args, **kwargs)

        layer.call = capture
    dense(inputs(calibration))
    for layer in _linear_layers(block_dense):
        layer.call = originals[layer.name]
    total = 0.0
    for name, x in captured.items():
        w_dense = ops.convert_to_numpy(next(l for l in _linear_layers(block_dense) if l.name == name).kernel)
        w_pruned = ops.convert_to_numpy(wrappers[name].layer.kernel)
        equation = getattr(wrappers[name].layer, "equation", "...a,ab->...b")
        total += float(np.linalg.norm(np.einsum(equation, x, w_dense) - np.einsum(equation, x, w_pruned)))
    return total


def _linear_layers(block):
    attention = block._self_attention_layer
    return [
        attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense,
        block._feedforward_intermediate_dense, block._feedforward_output_dense,
    ]


@pytest.mark.parametrize("structure", [None, tfs.NM(2, 4)], ids=["50%", "2:4"])
def test_sparsegpt_beats_wanda_beats_magnitude(trained, structure):
    path, calibration, held_out = trained
    dense = load(path)
    dense_perplexity = perplexity_lib.perplexity(dense, held_out)
    errors, perplexities = {}, {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = load(path)
        tfs.prune_oneshot(model, method, calibration, sparsity=0.5, structure=structure, blocksize=32, verbose=0)
        for kernel in tfs.sparse_kernels(model):
            mask = ops.convert_to_numpy(kernel.state.mask)
            assert mask.mean() == 0.5, kernel.path
            if structure is not None:
                groups = np.moveaxis(mask, kernel.input_axis, -1).reshape(-1, 4).sum(-1)
                assert np.all(groups == 2), kernel.path
        # Embeddings and the (tied) output head stay dense; every linear
        # layer of the transformer blocks is pruned.
        assert len(tfs.sparse_layers(model)) == 12
        errors[method] = reconstruction_error(dense, model, calibration)
        perplexities[method] = perplexity_lib.perplexity(model, held_out)
    print("PPL", structure, dense_perplexity, perplexities, errors)
    assert errors["sparsegpt"] <= errors["wanda"] < errors["magnitude"]
    assert perplexities["sparsegpt"] <= perplexities["wanda"] < perplexities["magnitude"]
    assert dense_perplexity < perplexities["sparsegpt"]


def test_the_pruned_model_generates_and_strip_export_save_are_exact(trained, tmp_path):
    path, calibration, held_out = trained
    model = load(path)
    tfs.prune_oneshot(model, "sparsegpt", calibration, sparsity=0.5, blocksize=32, verbose=0)
    assert type(model).__name__ == "GPT2CausalLM"
    prompt = {"token_ids": held_out[:2, :LENGTH].copy(), "padding_mask": np.zeros((2, LENGTH), bool)}
    prompt["padding_mask"][:, :8] = True
    generated = model.generate(prompt, stop_token_ids=None)
    assert generated["token_ids"].shape == (2, LENGTH)
    x = inputs(held_out[:4, :LENGTH])
    expected = ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(ops.convert_to_numpy(tfs.strip(load_saved(model, tmp_path))(x)), expected, rtol=1e-5, atol=1e-5)
    export_dir = str(tmp_path / "export" / "1")
    tfs.export_saved_model(model, export_dir)
    # Served with no tf_sparsity or keras_hub; the signature takes int32 masks.
    served = serve_in_fresh_process(export_dir, {k: v.astype("int32") for k, v in x.items()}, tmp_path)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    tfs.save(model, tmp_path / "pruned.keras")
    restored = tfs.load(tmp_path / "pruned.keras")
    np.testing.assert_array_equal(ops.convert_to_numpy(restored(x)), expected)
    assert tfs.sparsity_summary(restored, print_fn=None).global_sparsity > 0.2


def load_saved(model, tmp_path):
    """A copy of `model` through `tfs.save`/`tfs.load` (strip works on a
    copy, leaving the tested model as it was)."""
    tfs.save(model, tmp_path / "copy.keras")
    return tfs.load(tmp_path / "copy.keras")


def test_the_oneshot_command_writes_a_row_that_report_reads(trained, tmp_path):
    path, _, _ = trained
    text = tmp_path / "text.txt"
    text.write_bytes(python_source_bytes()[:60000])
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "tf_sparsity_models.cli", "oneshot", "wanda", "--model", str(path),
        "--text_file", str(text), "--structure", "2:4", "--num_samples", "16",
        "--sequence_length", str(LENGTH), "--max_eval_windows", "32", "--out", str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((out / "result.json").read_text())
    dense = json.loads((out / "dense.json").read_text())
    assert row["method"] == "wanda_2:4" and row["main_metric"] == "perplexity"
    assert row["target_sparsity"] == 0.5 and abs(row["pruned_layers_sparsity"] - 0.5) < 1e-9
    assert row["perplexity"] > dense["perplexity"] == row["dense_perplexity"] > 1.0
    report = subprocess.run(
        [sys.executable, "-m", "tf_sparsity_models.cli", "report", str(tmp_path), "--out", str(tmp_path / "report"), "--paper"],
        capture_output=True, text=True, timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "oneshot_tiny_gpt2" in markdown and "wanda_2:4" in markdown
    assert "| wanda_2:4 | 11.02 | 8.27 | 5.16 |" in markdown  # the published anchors


def test_the_oneshot_command_checks_its_input_before_loading_anything(tmp_path):
    text = tmp_path / "latin1.txt"
    text.write_bytes("caf\xe9".encode("latin-1"))
    cases = [
        (["--model", str(tmp_path / "missing.keras"), "--text_file", str(text)], "--model .*missing.keras: no such file"),
        (["--model", str(text), "--text_file", str(tmp_path / "none.txt")], "--text_file .*none.txt: no such file"),
        (["--model", str(text), "--text_file", str(text)], "--text_file .*latin1.txt: not UTF-8"),
        (["--model", str(text), "--text_file", str(text), "--structure", "2x"], "structure '2x'"),
    ]
    # Keras and TensorFlow cannot be imported: the checks come first.
    without_keras = (
        "import sys; sys.modules['keras'] = sys.modules['tensorflow'] = None; "
        "from tf_sparsity_models.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    for flags, message in cases:
        done = subprocess.run(
            [sys.executable, "-c", without_keras, "oneshot", "wanda", *flags, "--out", str(tmp_path / "o")],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 2, (flags, done.stderr[-2000:])
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and re.search(message, errors[0]), done.stderr[-2000:]
