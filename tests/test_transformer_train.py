"""End-to-end Transformer runs through the shared runner.

- A toy translation task (a word-for-word language that moves the verb to
  the end, a few hundred sentence pairs) learned by a tiny Transformer to
  BLEU > 80 with beam and greedy decoding, dense and magnitude-pruned; the
  saved model, the `translate` command and the SavedModel (in a process that
  cannot import tf_sparsity or keras_hub) translate exactly as the trained
  model does.
- The base-width model (2 of its 6 layers per stack) for a few steps with
  each method on mocked WMT14:
  the schedule reaches its target, and the string signature translates in a
  fresh process.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tf_sparsity as tfs
from tf_sparsity_models import cli as tfs_cli
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import runner
from tf_sparsity_models.common import task as task_lib
from tf_sparsity_models.transformer import bleu
from tf_sparsity_models.transformer import data as data_lib
from tf_sparsity_models.transformer import task as transformer_task
from tf_sparsity_models.transformer import translate
from tf_sparsity_models.transformer import translator
from tf_sparsity_models.transformer import vocab as vocab_lib

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

NOUNS = {"dog": "hund", "cat": "katze", "man": "mann", "woman": "frau", "bird": "vogel",
         "child": "kind", "horse": "pferd", "fish": "fisch"}
VERBS = {"sees": "sieht", "likes": "mag", "finds": "findet", "calls": "ruft",
         "follows": "folgt", "hears": "hoert"}
ADJECTIVES = {"big": "gross", "small": "klein", "red": "rot", "old": "alt", "young": "jung",
              "happy": "froh"}
DETERMINERS = {"the": "der", "a": "ein"}


def _phrase(rng):
    determiner = rng.choice(list(DETERMINERS))
    adjective = rng.choice([None, *ADJECTIVES])
    noun = rng.choice(list(NOUNS))
    english = [determiner] + ([adjective] if adjective else []) + [noun]
    german = [DETERMINERS[determiner]] + ([ADJECTIVES[adjective]] if adjective else []) + [NOUNS[noun]]
    return english, german


def toy_pairs(count, seed):
    """`subject verb object` -> `subject object verb`, word for word."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        subject_en, subject_de = _phrase(rng)
        object_en, object_de = _phrase(rng)
        verb = rng.choice(list(VERBS))
        pairs.append((
            " ".join(subject_en + [verb] + object_en),
            " ".join(subject_de + object_de + [VERBS[verb]]),
        ))
    return pairs


class ToyTranslationTask(transformer_task.TransformerTask):
    name = "toy_translation"

    def load_data(self, config, model_dir):
        return data_lib.TextPairs(
            toy_pairs(400, 0), toy_pairs(50, 1), os.path.join(model_dir, vocab_lib.FILENAME),
            vocabulary_size=64, name="toy",
        )


@pytest.fixture
def toy_task():
    task = task_lib.register(ToyTranslationTask())
    yield task
    task_lib._REGISTERED.pop(task.name, None)


def mock_wmt14():
    return tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE)


def serve_strings_in_fresh_process(export_dir, sentences, tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(
        "import json, sys\n"
        "sys.modules['tf_sparsity'] = None  # must not be needed to serve\n"
        "sys.modules['keras_hub'] = None\n"
        "import tensorflow as tf, tensorflow_text\n"
        f"loaded = tf.saved_model.load({str(export_dir)!r})\n"
        "sentences = json.loads(sys.stdin.read())\n"
        "out = loaded.signatures['serving_default'](sentences=tf.constant(sentences))\n"
        "print(json.dumps([t.decode('utf-8') for t in out['translations'].numpy()]))\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], input=json.dumps(sentences), capture_output=True,
        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_toy_translation_is_learned_and_served_exactly(toy_task, tmp_path, capsys):
    """A pruned Transformer learns the toy translation (so the dense one,
    the same code without masks, does too), and the run's saved model, the
    command line and the SavedModel translate as the trained model."""
    method, sparsity = "magnitude", 0.5
    model_dir = str(tmp_path / "run")
    config = config_lib.make_config(
        toy_task, None,
        dict(
            method=method, sparsity=sparsity, num_layers=2, hidden_size=64, num_heads=4,
            filter_size=128, max_length=24, steps=300, batch_size=512, learning_rate=1.0,
            warmup_steps=100, eval_batch_size=32, checkpoint_every=100, beam_size=4,
            extra_decode_length=8, export=True,
            # XLA compiles take longer than these few hundred CPU steps.
            jit_compile=False,
        ),
    )
    result = runner.run(config, model_dir, verbose=0, print_fn=lambda *a: None)
    row = result.row
    assert row["main_metric"] == "bleu_tokenized"
    assert row["bleu"] > 80 and row["bleu_tokenized"] > 80, row  # Beam search.
    assert row["bleu_signature"].startswith("nrefs:1") and row["bleu_sentences"] == 50
    assert row["global_sparsity"] == pytest.approx(sparsity, abs=0.005)

    sources = [s for s, _ in toy_pairs(50, 1)]
    references = [t for _, t in toy_pairs(50, 1)]
    codec = vocab_lib.Codec(vocab_lib.read(os.path.join(model_dir, vocab_lib.FILENAME)))
    decoding = dict(extra_length=8, jit_compile=False)
    greedy = translator.Translator(result.model, codec, beam_size=1, **decoding)(sources)
    assert bleu.score(greedy, references).bleu > 80
    beam = translator.Translator(result.model, codec, beam_size=4, alpha=0.6, **decoding)(sources)

    # The saved run translates exactly as the trained model.
    assert translate.load_run(model_dir)(sources) == beam
    # The command line, from a file.
    source_file = tmp_path / "news.en"
    source_file.write_text("\n".join(sources[:5]) + "\n")
    capsys.readouterr()
    assert tfs_cli.main(["translate", "--model_dir", model_dir, "--input", str(source_file)]) == 0
    assert capsys.readouterr().out.splitlines() == beam[:5]
    # The SavedModel, with no tf_sparsity or keras_hub: strings in, strings out.
    served = serve_strings_in_fresh_process(
        os.path.join(model_dir, runner.EXPORT_DIRNAME), sources, tmp_path
    )
    assert served == beam


def test_base_size_model_runs_magnitude_end_to_end_on_mocked_wmt14(tmp_path):
    """Through the runner: training, evaluation, BLEU, save and export, at
    the base widths. One of the six layers per stack: every layer of a stack
    is the same code (the toy run above stacks two), the full depth's shapes
    and parameter count are checked in `test_transformer.py` (building it),
    and tracing all six for training, decoding and export costs about two
    minutes on 2 CPU cores."""
    model_dir = str(tmp_path / "run")
    # Pruning starts at step 0 and completes at step 1.
    overrides = dict(
        method="magnitude", sparsity=0.9, steps=2, batch_size=256, vocabulary_size=300,
        vocabulary_sentences=40, begin_step=0, end_step=1, frequency=1, checkpoint_every=2,
        jit_compile=False, eval_steps=1, bleu_examples=2, beam_size=2, extra_decode_length=3,
        num_layers=1,
    )
    with mock_wmt14():
        config = config_lib.make_config(task_lib.get("transformer"), None, overrides)
        result = runner.run(config, model_dir, verbose=0, print_fn=lambda *a: None)
    row, model = result.row, result.model
    assert row["steps"] == 2 and row["method"] == "magnitude"
    assert model.hidden_size == 512 and model.num_layers == 1 and model.filter_size == 2048
    assert len(tfs.sparse_layers(model)) == 6 + 10 + 1
    assert row["global_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert row["bleu_tokenized"] is not None and row["bleu_sentences"] == 2
    served = serve_strings_in_fresh_process(
        os.path.join(model_dir, runner.EXPORT_DIRNAME), ["A resumption of the session.", "Hello"], tmp_path
    )
    # (An untrained model: what it says is noise, but it says it.)
    assert len(served) == 2 and all(isinstance(s, str) for s in served)


@pytest.mark.parametrize("method", ["random", "variational_dropout", "l0"])
def test_base_size_model_trains_with_each_method_on_mocked_wmt14(method, tmp_path):
    """The other methods train the base model's layers a few steps (built,
    sparsified and compiled as the runner does; without its saving, which
    the magnitude run covers). Base widths, 1 of the 6 layers per stack, as
    the magnitude run above."""
    task = task_lib.get("transformer")
    overrides = dict(
        method=method, sparsity=0.9, steps=2, batch_size=64, vocabulary_size=300,
        vocabulary_sentences=40, begin_step=0, end_step=1, jit_compile=False, num_layers=1,
    )
    if method == "random":
        overrides["frequency"] = 1
    with mock_wmt14():
        config = config_lib.make_config(task, None, overrides)
        data = task.load_data(config, str(tmp_path))
        model = runner.build_sparse_model(task, config, data)
        task.compile(model, config, data)
        train = task.train_dataset(tf.distribute.get_strategy(), config, data, 0)
        history = model.fit(train, steps_per_epoch=2, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert model.hidden_size == 512 and model.filter_size == 2048 and model.num_layers == 1
    assert len(tfs.sparse_layers(model)) == 6 + 10 + 1
    assert np.isfinite(history.history["loss"][-1])
    report = tfs.sparsity_summary(model, print_fn=None)
    if method == "random":
        assert report.global_sparsity == pytest.approx(0.9, abs=1e-3)
    else:
        # The penalty is at full weight after its ramp, and in the loss.
        _, wrapper = tfs.sparse_layers(model)[0]
        assert wrapper.method.ramp.value(2) == 1.0
        assert 0.0 <= report.global_sparsity < 1.0


def test_lottery_variant_reuses_a_transformer_runs_masks(tmp_path):
    source_dir = str(tmp_path / "source")
    base = dict(steps=8, checkpoint_every=4, bleu_examples=2, eval_steps=1, export=False)
    task = task_lib.get("transformer")
    source = runner.run(
        config_lib.make_config(task, "tiny", dict(base, method="magnitude", sparsity=0.75)),
        source_dir, verbose=0, print_fn=lambda *a: None,
    )
    learned, _ = tfs.read_masks(os.path.join(source_dir, runner.MASKS_FILENAME))
    # (scratch_b and the other variants: tests/test_learned_masks.py.)
    for variant in ("lottery",):
        config = config_lib.make_config(task, None, dict(mask_from=source_dir, variant=variant))
        assert config.method == "fixed_mask" and config.num_layers == 1  # Inherited.
        result = runner.run(config, str(tmp_path / variant), verbose=0, print_fn=lambda *a: None)
        assert result.row["method"] == variant and result.row["mask_from"] == source_dir
        assert result.row["steps"] == 8
        masks, _ = tfs.read_masks(os.path.join(str(tmp_path / variant), runner.MASKS_FILENAME))
        assert sorted(masks) == sorted(learned)
        for key in learned:
            np.testing.assert_array_equal(masks[key], learned[key], err_msg=key)
    assert source.row["global_sparsity"] == pytest.approx(0.75, abs=1e-3)


def test_vd_run_reports_bleu_and_sparsity_at_each_threshold(tmp_path):
    task = task_lib.get("transformer")
    config = config_lib.make_config(
        task, "tiny",
        dict(
            method="variational_dropout", sparsity=0.5, export=False, eval_steps=0,
            bleu_examples=2, vd_thresholds=(0.0, 3.0, 8.0),
        ),
    )
    row = runner.run(config, str(tmp_path), verbose=0, print_fn=lambda *a: None).row
    sweep = row["threshold_sweep"]
    assert [entry["threshold"] for entry in sweep] == [0.0, 3.0, 8.0]
    # A higher threshold prunes fewer weights; each point has its BLEU.
    sparsities = [entry["global_sparsity"] for entry in sweep]
    assert sparsities[0] >= sparsities[1] >= sparsities[2]
    assert all(entry["bleu_tokenized"] >= 0.0 for entry in sweep)
    # The run's own threshold is restored for its reported sparsity.
    assert row["global_sparsity"] <= sparsities[0]
