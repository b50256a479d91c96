"""The Transformer reference task's parts: model and its sparsified layers,
cached decoding, BLEU, learning rate, loss, configs, the TFDS pipeline and
vocabulary (real code on mocked WMT14) and the CLI's error lines."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from keras import ops

import tf_sparsity as tfs
from tf_sparsity_models import cli as tfs_cli
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib
from tf_sparsity_models.transformer import bleu
from tf_sparsity_models.transformer import configs
from tf_sparsity_models.transformer import data as data_lib
from tf_sparsity_models.transformer import decoding
from tf_sparsity_models.transformer import loss as loss_lib
from tf_sparsity_models.transformer import lr_schedule
from tf_sparsity_models.transformer import model as model_lib
from tf_sparsity_models.transformer import vocab as vocab_lib

pytestmark = pytest.mark.tensorflow


def tiny_transformer(vocabulary_size=40, **kwargs):
    args = dict(num_layers=2, hidden_size=16, num_heads=2, filter_size=32, dropout=0.0)
    args.update(kwargs)
    return model_lib.build(model_lib.Transformer(vocabulary_size, **args))


def make_config(preset=None, **overrides):
    return config_lib.make_config(task_lib.get("transformer"), preset, overrides)


def mock_wmt(num_examples=40):
    return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


# Model.


def test_base_model_has_transformer_base_size_and_one_shared_embedding():
    model = model_lib.build(model_lib.Transformer(32768))
    embeddings = [w for w in model.weights if "embeddings" in w.path]
    assert len(embeddings) == 1 and tuple(embeddings[0].shape) == (32768, 512)
    # 6 encoder layers (4 d^2 attention + 2 d*4d FFN) and 6 decoder layers
    # (8 d^2 + 2 d*4d), biases and layer norms, one embedding: t2t's
    # transformer_base with shared embeddings has ~61M parameters at 32k.
    kernels = sum(
        int(np.prod(w.shape)) for w in model.weights if w.path.endswith("kernel")
    )
    d = 512
    assert kernels == 6 * (4 * d * d + 8 * d * d) + 6 * (8 * d * d + 8 * d * d)
    assert 60e6 < model.count_params() < 62e6


def test_sparsify_reaches_every_projection_ffn_layer_and_the_embedding():
    model = tfs.sparsify(tiny_transformer(), tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))
    paths = [path for path, _ in tfs.sparse_layers(model)]
    # Per encoder layer 4 attention + 2 FFN; per decoder layer 8 + 2; + 1.
    assert len(paths) == 2 * 6 + 2 * 10 + 1
    assert model_lib.EMBEDDING_NAME in paths
    for name in ("self_attention/query", "cross_attention/key", "cross_attention/attention_output"):
        assert any(p.endswith(name) for p in paths), name
    assert isinstance(model, model_lib.Transformer)  # Changed in place.


def test_mpfc_keeps_the_embedding_dense_and_embedding_sparsity_targets_it():
    method = tfs.make_method("magnitude", 0.8, 10)
    dense_embedding = tfs.sparsify(tiny_transformer(), method, distribution=model_lib.sparsity_distribution(0.0))
    assert model_lib.EMBEDDING_NAME not in [p for p, _ in tfs.sparse_layers(dense_embedding)]
    own = tfs.sparsify(
        tiny_transformer(), tfs.MagnitudePruning(tfs.ConstantSparsity(0.8)),
        distribution=model_lib.sparsity_distribution(0.3),
    )
    tfs.update_masks(own, step=0)
    report = {row.path: row for row in tfs.sparsity_summary(own, print_fn=None).layers}
    assert report[model_lib.EMBEDDING_NAME].sparsity == pytest.approx(0.3, abs=0.01)
    assert report["decoder_0/feedforward_output_dense"].sparsity > 0.8


@pytest.mark.parametrize("method", ["magnitude", "variational_dropout", "l0"])
def test_cached_decoding_steps_give_the_teacher_forced_logits(method, rng):
    model = tiny_transformer()
    if method != "magnitude":
        model = tfs.sparsify(model, tfs.make_method(method, 0.5, 10, num_examples=100))
    else:
        model = tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))
        tfs.update_masks(model, step=0)
    source = rng.integers(3, 40, (3, 7)).astype("int32")
    source[0, 4:] = model_lib.PAD_ID
    target = rng.integers(3, 40, (3, 6)).astype("int32")
    full = ops.convert_to_numpy(model({"source": source, "target": target}))
    encoded, mask = model.encode(source)
    self_cache, cross_cache = model.empty_caches(3, 6, 7)
    previous = np.zeros((3, 1), "int32")
    for index in range(6):
        logits, self_cache, cross_cache = model.decode_step(
            previous, index, encoded, mask, self_cache, cross_cache, fill_cross=index == 0
        )
        np.testing.assert_allclose(ops.convert_to_numpy(logits), full[:, index], atol=1e-4)
        previous = target[:, index : index + 1]


# Decoding.


def test_beam_of_one_without_length_penalty_is_greedy_and_xla_matches_eager(rng):
    model = tiny_transformer()
    source = rng.integers(3, 40, (4, 6)).astype("int32")
    greedy = ops.convert_to_numpy(decoding.greedy(model, source, 10))
    one_beam = ops.convert_to_numpy(decoding.beam_search(model, source, 10, beam_size=1, alpha=0.0))
    np.testing.assert_array_equal(greedy, one_beam)
    beams = ops.convert_to_numpy(decoding.beam_search(model, source, 10, beam_size=4, alpha=0.6))
    compiled = tf.function(
        lambda s: decoding.beam_search(model, s, 10, beam_size=4, alpha=0.6), jit_compile=True
    )
    np.testing.assert_array_equal(compiled(source).numpy(), beams)
    # Rows end with EOS then padding only.
    for row in np.concatenate([greedy, beams]):
        if model_lib.EOS_ID in row:
            after = row[list(row).index(model_lib.EOS_ID) + 1 :]
            assert (after == model_lib.PAD_ID).all()


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_sentence_translates_the_same_alone_or_in_any_batch(beam_size, rng):
    model = tiny_transformer()
    lengths = [2, 7, 4]
    source = np.zeros((3, 9), "int32")
    for row, length in enumerate(lengths):
        source[row, :length] = rng.integers(3, 40, length)
    together = ops.convert_to_numpy(decoding.decode(model, source, 5, beam_size))
    for row, length in enumerate(lengths):
        alone = ops.convert_to_numpy(decoding.decode(model, source[row : row + 1, :length], 5, beam_size))
        assert decoding.trim(alone) == decoding.trim(together[row : row + 1])
        # Each sentence stops at its own source length + 5 tokens.
        assert len(decoding.trim(alone)[0]) <= length + 5 - 1


def test_beam_search_prefers_the_sequence_with_the_best_penalized_score():
    # A model whose next-token distribution depends only on the previous
    # token: greedy takes token 5 (p=0.6) then gets a poor continuation;
    # the beam finds 6 (p=0.4) followed by a certain EOS.
    table = np.full((8, 8), -20.0, "float32")
    table[0, 5], table[0, 6] = math.log(0.6), math.log(0.4)
    table[5, 3], table[5, 4], table[5, 7] = math.log(0.34), math.log(0.33), math.log(0.33)
    table[3, 1] = table[4, 1] = table[7, 1] = 0.0
    table[6, 1] = 0.0

    class Lookup:
        num_layers, num_heads, head_size = 1, 1, 1

        def encode(self, source):
            return ops.zeros((ops.shape(source)[0], 1, 1)), ops.ones((ops.shape(source)[0], 1), "bool")

        def empty_caches(self, batch, max_length, source_length):
            return ops.zeros((1, batch, 1)), ops.zeros((1, batch, 1))

        def decode_step(self, tokens, index, encoded, mask, self_cache, cross_cache, fill_cross):
            return ops.take(table, tokens[:, 0], axis=0), self_cache, cross_cache

    source = np.ones((1, 2), "int32")
    greedy = decoding.trim(ops.convert_to_numpy(decoding.greedy(Lookup(), source, 6)))
    beam = decoding.trim(ops.convert_to_numpy(decoding.beam_search(Lookup(), source, 6, 2, 0.0)))
    assert greedy == [[5, 3]]  # 0.6 * 0.34 = 0.204
    assert beam == [[6]]  # 0.4


def test_length_penalty_is_gnmt():
    assert float(decoding.length_penalty(1, 0.6)) == pytest.approx(1.0)
    assert float(decoding.length_penalty(10, 0.6)) == pytest.approx((15 / 6) ** 0.6)


# BLEU.


def test_tokenized_bleu_splits_compounds_and_moses_tokenizes():
    assert bleu.split_compounds("ein Rich-Text-Format") == "ein Rich ##AT##-##AT## Text ##AT##-##AT## Format"
    assert bleu.split_compounds("a - b") == "a - b"
    assert bleu.moses_tokenize(["Hallo, Welt!"]) == ["Hallo , Welt !"]
    references = ["Das ist ein gutes Rich-Text-Format, oder nicht?", "Der Hund schläft."]
    perfect = bleu.score(references, references)
    assert perfect.bleu == pytest.approx(100.0) and perfect.bleu_tokenized == pytest.approx(100.0)
    assert perfect.signature.startswith("nrefs:1|case:mixed")
    # Spacing differences change neither score; a wrong word lowers both.
    spaced = bleu.score(["Das ist ein gutes Rich-Text-Format , oder nicht ?", "Der Hund schläft ."], references)
    assert spaced.bleu_tokenized == pytest.approx(100.0)
    wrong = bleu.score(["Das ist ein schlechtes Rich-Text-Format, oder nicht?", "Der Hund schläft."], references)
    assert wrong.bleu < 100 and wrong.bleu_tokenized < 100
    with pytest.raises(ValueError, match="1 translations for 2 references"):
        bleu.score(["a"], references)


# Training pieces.


def test_learning_rate_is_t2t_rsqrt_schedule():
    schedule = lr_schedule.TransformerSchedule(2.0, 8000, 512)
    peak = 2.0 * 8000**-0.5 * 512**-0.5
    assert float(schedule(7999)) == pytest.approx(peak, rel=1e-6)
    assert float(schedule(3999)) == pytest.approx(peak / 2, rel=1e-6)
    assert float(schedule(31999)) == pytest.approx(peak / 2, rel=1e-6)
    restored = lr_schedule.TransformerSchedule.from_config(schedule.get_config())
    assert float(restored(100)) == float(schedule(100))


def test_smoothed_loss_matches_dense_label_smoothing_and_skips_padding(rng):
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    targets = np.array([[1, 2, 0], [3, 0, 0]], "int32")
    weights = (targets != 0).astype("float32")
    ours = loss_lib.SmoothedCrossEntropy(0.1)(targets, logits, sample_weight=weights)
    # t2t smooths over the other classes: 0.1 / (V - 1) each.
    smoothed = np.full((2, 3, 7), 0.1 / 6, "float32")
    np.put_along_axis(smoothed, targets[..., None], 0.9, axis=-1)
    per_token = -(smoothed * np.log(keras.ops.convert_to_numpy(ops.softmax(logits)))).sum(-1)
    expected = (per_token * weights).sum() / weights.sum()
    assert float(ours) == pytest.approx(float(expected), rel=1e-5)


# Configs and presets.


def test_presets_cover_every_paper_method_and_sparsity_and_cite_their_run():
    for method in configs.PAPER_METHODS:
        for sparsity in configs.PAPER_SPARSITIES:
            name = f"{method}_{round(sparsity * 100)}"
            assert name in configs.PRESETS
            run = configs.paper_run(method, sparsity)
            assert run is not None and str(sparsity) in run.source
    assert configs.PRESETS["mpfc_90"]["embedding_sparsity"] == 0.0


def test_resolve_scales_the_released_schedule_to_the_run():
    config = make_config("magnitude_90", steps=5000)
    # magnitude_pruning_0.9_0_400000_10000_0.0_0.1, scaled by 5000 / 500k.
    assert (config.begin_step, config.end_step, config.frequency) == (0, 4000, 100)
    assert (config.dropout, config.label_smoothing) == (0.0, 0.1)
    vd = make_config("variational_dropout_90")
    assert (vd.begin_step, vd.end_step) == (0, 200_000)
    assert vd.method_args == {"kl_weight": 8.89e-8, "threshold": 2.5, "ramp_shape": "cubic"}
    l0 = make_config("l0_50")
    assert l0.method_args["gate_lr_multiplier"] == 1.0 and l0.label_smoothing == 0.1
    dense = make_config()
    assert (dense.dropout, dense.label_smoothing, dense.batch_size, dense.steps) == (0.1, 0.1, 2048, 500_000)


def test_vd_preset_builds_the_cubic_ramp_and_threshold():
    from tf_sparsity_models.common import runner

    config = make_config("variational_dropout_90", steps=1000)
    method = runner.make_method(config, train_examples=100)
    assert isinstance(method, tfs.VariationalDropout)
    assert method.kl_weight == pytest.approx(8.89e-8) and method.threshold == 2.5
    assert method.ramp.shape == "cubic" and method.ramp.end_step == 400


# Data: the real TFDS code on mocked WMT14, and the vocabulary.


def test_wmt14_pipeline_and_vocabulary_build_under_mock_data(tmp_path):
    config = make_config(vocabulary_size=200, vocabulary_sentences=30, max_length=32, batch_size=256)
    with mock_wmt():
        data = data_lib.load(config, str(tmp_path), print_fn=lambda *a: None)
        assert (tmp_path / vocab_lib.FILENAME).exists()
        assert 8 < data.info.vocabulary_size <= 200
        batches = list(data.train_dataset_fn(256, 32, 0, 100)(None).take(6))
        sources, references = data.test_sentences(limit=5)
    bounds = data_lib.bucket_boundaries(32)
    for inputs, targets, weights in batches:
        source, target = inputs["source"].numpy(), targets.numpy()
        assert source.shape[1] == target.shape[1] in bounds
        assert source.size <= 256 and target.size <= 256  # Token-based batches.
        for row in target:
            real = row[row != model_lib.PAD_ID]
            assert real[-1] == model_lib.EOS_ID and len(real) <= 32
        np.testing.assert_array_equal(weights.numpy(), (target != 0).astype("float32"))
    assert len(sources) == len(references) == 5 and all(isinstance(s, str) for s in sources)
    # A second load reuses the vocabulary instead of rebuilding it.
    before = (tmp_path / vocab_lib.FILENAME).stat().st_mtime_ns
    with mock_wmt():
        data_lib.load(config, str(tmp_path), print_fn=lambda *a: None)
    assert (tmp_path / vocab_lib.FILENAME).stat().st_mtime_ns == before


def test_codec_round_trips_text(tmp_path):
    words = "the a cat dog house tree runs sees big small".split()
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(words, 5)) for _ in range(200)]
    path = vocab_lib.build(sentences, str(tmp_path / "v.spm"), 60, total=200, print_fn=lambda *a: None)
    codec = vocab_lib.Codec(vocab_lib.read(path))
    ids = codec.tokenize(sentences[:3])
    assert all(row[-1] == model_lib.EOS_ID for row in ids)
    assert codec.detokenize([row[:-1] for row in ids]) == sentences[:3]


# One error line for bad input.


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--method", "pruning"], "unknown method 'pruning'"),
        (["--method", "magnitude", "--sparsity", "1.0"], "sparsity must be below 1.0"),
        (["--vocabulary", "/no/such/vocab.spm"], "--vocabulary /no/such/vocab.spm does not exist"),
        (["--data_dir", "/no/such/dir"], "--data_dir /no/such/dir does not exist"),
        (["--num_heads", "3"], "num_heads 3 does not divide hidden_size 512"),
        (["--vd_thresholds", "1,2"], "vd_thresholds is for --method variational_dropout"),
        (["--config", "mpfc_42"], "unknown config preset 'mpfc_42'"),
    ],
)
def test_bad_values_give_one_error_line(flags, message, tmp_path, capsys):
    argv = ["train", "--task", "transformer", "--model_dir", str(tmp_path), *flags]
    with mock_wmt():
        assert tfs_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and message in err[0], err[0]


def test_translate_refuses_a_directory_without_a_run(tmp_path, capsys):
    assert tfs_cli.main(["translate", "--model_dir", str(tmp_path)]) == 2
    assert "has no model.keras" in capsys.readouterr().err
    assert tfs_cli.main(["translate", "--export", str(tmp_path)]) == 2
    assert "holds no SavedModel" in capsys.readouterr().err


def test_a_task_whose_extra_is_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(task_lib.TASKS, "transformer", "no_such_module_for_tests.task:TASK")
    with pytest.raises(ValueError, match=r'needs no_such_module_for_tests .*pip install "tf_sparsity\[transformer\]"'):
        task_lib.get("transformer")
