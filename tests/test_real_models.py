"""Models people have: keras-hub stacks and task models, unregistered
subclassed models, shared layers and tied embeddings.

For each: sparsify, train a few steps, then `strip`, `export_saved_model`
(served in a process that cannot import tf_sparsity or keras_hub),
`tfs.save`/`tfs.load` and `model.save` must give exactly the sparse model's
inference outputs, or fail at once with an error naming what to do.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs

keras_hub = pytest.importorskip("keras_hub")


VOCAB = 40
SEQ = 8


def magnitude():
    return tfs.MagnitudePruning(tfs.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=2, frequency=1))


def random_pruning():
    return tfs.RandomPruning(tfs.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=2, frequency=1), seed=3)


METHODS = {"magnitude": magnitude, "random": random_pruning}


def encoder_decoder():
    """A keras-hub seq2seq stack, as in the keras-hub translation guide."""
    embed = keras_hub.layers.TokenAndPositionEmbedding(VOCAB, SEQ, 16, name="src_embed")
    source = keras.Input((SEQ,), dtype="int32", name="source")
    target = keras.Input((SEQ,), dtype="int32", name="target")
    encoded = keras_hub.layers.TransformerEncoder(32, 2, name="encoder")(embed(source))
    target_embed = keras_hub.layers.TokenAndPositionEmbedding(VOCAB, SEQ, 16, name="tgt_embed")
    decoded = keras_hub.layers.TransformerDecoder(32, 2, name="decoder")(
        target_embed(target), encoded
    )
    logits = keras.layers.Dense(VOCAB, name="logits")(decoded)
    return keras.Model([source, target], logits, name="seq2seq")


def gpt2():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def bert():
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16,
    )


def unregistered_subclassed():
    # Defined in a function and never registered, with a constructor argument.
    class Net(keras.Model):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.hidden = keras.layers.Dense(units, activation="relu")
            self.out = keras.layers.Dense(VOCAB)

        def call(self, x):
            return self.out(self.hidden(x))

    model = Net(12)
    model(np.zeros((1, SEQ), "float32"))
    return model


def shared_layer():
    shared = keras.layers.Dense(SEQ, activation="tanh", name="shared")
    inputs = keras.Input((SEQ,))
    outputs = keras.layers.Dense(VOCAB, name="head")(shared(shared(inputs)))
    return keras.Model(inputs, outputs, name="twice")


def inputs_for(name, rng):
    tokens = lambda: rng.integers(1, VOCAB, size=(4, SEQ)).astype("int32")
    if name == "encoder_decoder":
        return [tokens(), tokens()]
    if name in ("gpt2", "bert"):
        inputs = {"token_ids": tokens(), "padding_mask": np.ones((4, SEQ), "int32")}
        if name == "bert":
            inputs["segment_ids"] = np.zeros((4, SEQ), "int32")
        return inputs
    return rng.normal(size=(4, SEQ)).astype("float32")


MODELS = {
    "encoder_decoder": encoder_decoder,
    "gpt2": gpt2,
    "bert": bert,
    "unregistered_subclassed": unregistered_subclassed,
    "shared_layer": shared_layer,
}


def loss_for(name):
    return "mse" if name == "bert" else keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def targets_for(name, rng):
    if name == "bert":
        return None
    return rng.integers(0, VOCAB, size=(4, SEQ) if name in ("encoder_decoder", "gpt2") else (4,))


def as_numpy(outputs):
    if isinstance(outputs, dict):
        return {k: ops.convert_to_numpy(v) for k, v in sorted(outputs.items())}
    return ops.convert_to_numpy(outputs)


def assert_same(a, b):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    else:
        np.testing.assert_array_equal(a, b)


def trained_sparse(name, method, rng):
    model = MODELS[name]()
    sparse = tfs.sparsify(model, METHODS[method]())
    assert sparse is model and type(sparse) is type(model)
    x = inputs_for(name, rng)
    if name == "bert":
        sparse.compile(keras.optimizers.Adam(1e-2), loss="mse")
        y = {"sequence_output": np.zeros((4, SEQ, 16)), "pooled_output": np.zeros((4, 16))}
    else:
        sparse.compile(keras.optimizers.Adam(1e-2), loss=loss_for(name))
        y = targets_for(name, rng)
    sparse.fit(x, y, epochs=3, batch_size=4, verbose=0, callbacks=[tfs.SparsityCallback()])
    report = tfs.sparsity_summary(sparse, print_fn=None)
    assert all(abs(row.sparsity - 0.6) < 0.01 for row in report.layers if row.wrapped)
    return sparse, x


_SERVE = textwrap.dedent(
    """
    import sys
    sys.modules["tf_sparsity"] = None  # must not be needed to serve
    sys.modules["keras_hub"] = None
    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    data = np.load(sys.argv[2])
    if "x" in data.files:
        x = tf.constant(data["x"])
    elif "x0" in data.files:
        x = [tf.constant(data["x0"]), tf.constant(data["x1"])]
    else:
        x = {k: tf.constant(data[k]) for k in data.files}
    out = loaded.serve(x)
    if isinstance(out, dict):
        np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
    else:
        np.savez(sys.argv[3], y=out.numpy())
    """
)


def serve_in_fresh_process(export_dir, x, tmp_path):
    if isinstance(x, dict):
        np.savez(tmp_path / "x.npz", **x)
    elif isinstance(x, list):
        np.savez(tmp_path / "x.npz", x0=x[0], x1=x[1])
    else:
        np.savez(tmp_path / "x.npz", x=x)
    script = tmp_path / "serve.py"
    script.write_text(_SERVE)
    result = subprocess.run(
        [sys.executable, str(script), export_dir, str(tmp_path / "x.npz"), str(tmp_path / "y.npz")],
        capture_output=True, text=True, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = np.load(tmp_path / "y.npz")
    return data["y"] if data.files == ["y"] else {k: data[k] for k in sorted(data.files)}


@pytest.mark.core
@pytest.mark.parametrize("name", ["gpt2", "unregistered_subclassed", "shared_layer"])
def test_strip_and_save_give_the_trained_outputs_on_any_backend(name, rng, tmp_path):
    sparse, x = trained_sparse(name, "magnitude", rng)
    expected = as_numpy(sparse(x, training=False))
    plain = tfs.strip(sparse)
    assert type(plain) is type(sparse) and not tfs.sparse_layers(plain)
    assert_same(as_numpy(plain(x, training=False)), expected)
    if name != "unregistered_subclassed":
        path = str(tmp_path / "model.keras")
        tfs.save(sparse, path)
        assert_same(as_numpy(tfs.load(path)(x, training=False)), expected)


# Every model with magnitude pruning; another method's masks go through the
# same folding (tests/test_method_contract.py runs every method), so random
# pruning runs on the model with tied weights only.
CASES = [(name, "magnitude") for name in sorted(MODELS)] + [("gpt2", "random")]


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.parametrize("name, method", CASES)
def test_strip_export_and_save_give_the_trained_outputs(name, method, rng, tmp_path):
    sparse, x = trained_sparse(name, method, rng)
    expected = as_numpy(sparse(x, training=False))

    plain = tfs.strip(sparse)
    assert type(plain) is type(sparse)
    assert not [l for l in plain._flatten_layers() if isinstance(l, tfs.SparseWrapper)]
    assert_same(as_numpy(plain(x, training=False)), expected)

    export_dir = str(tmp_path / "export" / "1")
    tfs.export_saved_model(sparse, export_dir)
    # The export folds and restores the live model: it is unchanged.
    assert_same(as_numpy(sparse(x, training=False)), expected)
    served = serve_in_fresh_process(export_dir, x, tmp_path)
    if isinstance(expected, dict):
        for key in expected:
            np.testing.assert_allclose(served[key], expected[key], rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)

    path = str(tmp_path / "model.keras")
    if name == "unregistered_subclassed":
        # Keras records no constructor arguments of a Model subclass, so it
        # has no config: saving says so at once (nothing is written).
        with pytest.raises(ValueError, match=r"Net.*get_config"):
            tfs.save(sparse, path)
        assert not os.path.exists(path)
        return
    tfs.save(sparse, path)
    loaded = tfs.load(path)
    assert type(loaded) is type(sparse)
    assert_same(as_numpy(loaded(x, training=False)), expected)


@pytest.mark.tensorflow
def test_tied_gpt2_generates_after_sparsify_and_load(rng, tmp_path):
    sparse, x = trained_sparse("gpt2", "magnitude", rng)
    # The logits reuse the token embedding: one layer, one wrapper.
    embedding = sparse.backbone.token_embedding
    assert isinstance(embedding, tfs.SparseWrapper)
    assert len([w for p, w in tfs.sparse_layers(sparse) if w is embedding]) == 1
    prompt = {"token_ids": x["token_ids"][:2, :4], "padding_mask": np.ones((2, 4), bool)}
    generated = sparse.generate(prompt, max_length=SEQ, stop_token_ids=None)
    path = str(tmp_path / "gpt2.keras")
    tfs.save(sparse, path)
    loaded = tfs.load(path)
    assert isinstance(loaded.backbone.token_embedding, tfs.SparseWrapper)
    again = loaded.generate(prompt, max_length=SEQ, stop_token_ids=None)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(generated["token_ids"]), ops.convert_to_numpy(again["token_ids"])
    )
    # Generation uses the sparse kernels: folding them in changes nothing.
    plain = tfs.strip(sparse)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(plain.generate(prompt, max_length=SEQ, stop_token_ids=None)["token_ids"]),
        ops.convert_to_numpy(generated["token_ids"]),
    )


@pytest.mark.tensorflow
def test_keras_load_model_refuses_a_file_only_tfs_load_can_restore(rng, tmp_path):
    sparse, x = trained_sparse("gpt2", "magnitude", rng)
    path = str(tmp_path / "gpt2.keras")
    tfs.save(sparse, path)
    with pytest.raises(ValueError, match=r"tf_sparsity.load"):
        keras.saving.load_model(path)


@pytest.mark.tensorflow
def test_plain_model_save_of_nested_wrappers_fails_at_load_naming_the_layer(rng, tmp_path):
    sparse, x = trained_sparse("gpt2", "magnitude", rng)
    path = str(tmp_path / "plain.keras")
    sparse.save(path)  # Keras's own save: the config rebuilds plain layers.
    with pytest.raises(ValueError, match=r"token_embedding|query|dense"):
        keras.saving.load_model(path)


@pytest.mark.tensorflow
def test_functional_model_save_round_trips_with_keras(rng, tmp_path):
    sparse, x = trained_sparse("shared_layer", "magnitude", rng)
    expected = as_numpy(sparse(x))
    path = str(tmp_path / "m.keras")
    sparse.save(path)
    loaded = keras.saving.load_model(path)
    assert_same(as_numpy(loaded(x)), expected)
    # The shared layer is still one layer.
    assert len(tfs.sparse_layers(loaded)) == 2


@pytest.mark.tensorflow
def test_model_without_a_config_strips_exports_and_refuses_save(rng, tmp_path):
    class Classifier(keras.Model):
        # Takes a layer: Keras cannot write a config for it.
        def __init__(self, body):
            super().__init__()
            self.body = body
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(self.body(x))

    model = Classifier(keras.layers.Dense(8, activation="relu"))
    x = rng.normal(size=(4, 5)).astype("float32")
    model(x)
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(tfs.OneShot(0.5)))
    tfs.update_masks(sparse, 0)
    expected = as_numpy(sparse(x))
    # No config: strip copies the live model instead.
    plain = tfs.strip(sparse)
    assert type(plain) is Classifier and not tfs.sparse_layers(plain)
    assert_same(as_numpy(plain(x)), expected)
    assert tfs.sparse_layers(sparse)  # The sparse model is untouched.
    with pytest.raises(ValueError, match=r"Classifier.*save_weights"):
        tfs.save(sparse, str(tmp_path / "c.keras"))
    export_dir = str(tmp_path / "export")
    tfs.export_saved_model(sparse, export_dir)
    np.testing.assert_allclose(serve_in_fresh_process(export_dir, x, tmp_path), expected, atol=1e-6)
    plain = tfs.strip(sparse, in_place=True)
    assert plain is sparse and not tfs.sparse_layers(plain)
    assert_same(as_numpy(plain(x)), expected)


@pytest.mark.tensorflow
def test_keras_hub_composite_layer_get_config_reads_through_the_wrapper():
    emb = keras_hub.layers.TokenAndPositionEmbedding(VOCAB, 12, 32)
    inputs = keras.Input((12,), dtype="int32")
    model = keras.Model(inputs, emb(inputs))
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))
    config = sparse.get_config()  # Reads tie_weights of the wrapped layer.
    assert config["name"] == model.name
    tfs.update_masks(sparse, 0)
    x = np.arange(24).reshape(2, 12) % VOCAB
    assert_same(as_numpy(tfs.strip(sparse)(x)), as_numpy(sparse(x)))


@pytest.mark.core
def test_selecting_a_block_selects_the_layers_inside(rng):
    model = gpt2()
    sparse = tfs.sparsify(model, magnitude(), layers=["transformer_layer_0"])
    paths = [p for p, _ in tfs.sparse_layers(sparse)]
    assert paths and all("transformer_layer_0/" in p for p in paths)
    assert len(paths) == 6  # q, k, v, output, two FFN layers


@pytest.mark.core
def test_paths_do_not_need_auto_numbered_names(rng):
    gpt2()  # takes the first auto name, so the next backbone is numbered
    model = gpt2()
    sparse = tfs.sparsify(model, magnitude(), layers=["transformer_layer_1/self_attention/query"])
    (path,) = [p for p, _ in tfs.sparse_layers(sparse)]
    assert path.endswith("transformer_layer_1/self_attention/query")


@pytest.mark.core
def test_summary_lists_layers_with_weights_that_stay_dense():
    sparse = tfs.sparsify(gpt2(), magnitude())
    report = tfs.sparsity_summary(sparse, print_fn=None)
    unsupported = [row for row in report.layers if row.layer_type == "PositionEmbedding"]
    assert unsupported and not unsupported[0].wrapped and unsupported[0].sparsity == 0.0
    assert "unsupported" in report.table()
    assert report.size == sum(row.size for row in report.layers)


@pytest.mark.core
def test_registering_a_custom_layer_makes_it_sparsifiable(rng):
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.kernel = self.add_weight(shape=(shape[-1], 4), name="kernel")

        def call(self, x):
            return ops.matmul(x, self.kernel)

    inputs = keras.Input((6,))
    model = keras.Model(inputs, Scale(name="scale")(inputs))
    with pytest.raises(ValueError, match=r"register_sparsifiable"):
        tfs.sparsify(model, magnitude(), layers=["scale"])
    tfs.register_sparsifiable(Scale, "kernel")
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(tfs.OneShot(0.5)))
    tfs.update_masks(sparse, 0)
    x = rng.normal(size=(3, 6)).astype("float32")
    kernel = ops.convert_to_numpy(sparse.get_layer("scale").inference_kernels()["kernel"])
    assert (kernel == 0).sum() == 12
    np.testing.assert_allclose(ops.convert_to_numpy(sparse(x)), x @ kernel, rtol=1e-5)
