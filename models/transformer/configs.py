"""Transformer run configurations: defaults, the paper's presets, resolution.

The defaults are the paper's `sparse_transformer` recipe (tensor2tensor's
`transformer_base` with the `*_tpu` hparams the released scripts used:
max length 64, 2048 tokens per batch, 500k steps; google-research
`state_of_sparsity/sparse_transformer/models/sparse_transformer.py` and
`scripts/train_*.sh`).

The per-run settings of each method and sparsity come from the released
checkpoints (`state_of_sparsity/README.md`, "Trained Checkpoints", commit
00f9a0b1b464b91ed6902f594e7be3b6067203a0), whose names encode them:

- `magnitude_pruning_{sparsity}_{begin}_{end}_{frequency}_{dropout}_{label
  smoothing}` (and `random_pruning_...`, the same fields);
- `variational_dropout_{sparsity}_{ramp shape}_{ramp start}_{ramp
  length}_{KL weight}_{dropout}_{label smoothing}_{log alpha threshold}`;
- `l0_regularization_{sparsity}_{ramp shape}_{ramp start}_{ramp length}_{L0
  weight}_{dropout}_{label smoothing}`.

They are the best run of each grid (the full grids are in
`state_of_sparsity/results/sparse_transformer/technique_comparison/*.csv`).
All were trained for 500k steps; `resolve` scales their steps to the run's.
"""

import dataclasses

from tf_sparsity_models.common import config as config_lib

PAPER_STEPS = 500_000
#: Tokens per batch of the released runs (the `*_tpu` hparams' batch_size;
#: the scripts run them with `--worker_gpu=1`).
PAPER_BATCH_TOKENS = 2048
PAPER_SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
PAPER_METHODS = ("magnitude", "random", "variational_dropout", "l0")
DENSE = config_lib.DENSE
#: The log-alpha thresholds the paper swept after training VD runs.
PAPER_VD_THRESHOLDS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)


@dataclasses.dataclass(frozen=True)
class PaperRun:
    """The settings of one released Transformer run (at 500k steps).

    Attributes:
        begin_step: pruning begins (VD and L0: the penalty ramp starts).
        end_step: pruning ends (VD and L0: the ramp's end).
        frequency: steps between mask updates (None where not used).
        dropout: residual/attention dropout of the run.
        label_smoothing: label smoothing of the run.
        method_args: further arguments of the method's recipe.
        source: the released checkpoint they come from.
    """

    begin_step: int
    end_step: int
    frequency: object
    dropout: float
    label_smoothing: float
    method_args: dict = dataclasses.field(default_factory=dict)
    source: str = ""


def _pruning(prefix, sparsity, begin, end, frequency, dropout, smoothing):
    return PaperRun(
        begin, end, frequency, dropout, smoothing,
        source=f"{prefix}_{sparsity}_{begin}_{end}_{frequency}_{dropout}_{smoothing}",
    )


def _vd(sparsity, shape, start, length, weight, dropout, smoothing, threshold):
    return PaperRun(
        start, start + length, None, dropout, smoothing,
        method_args={"kl_weight": weight, "threshold": threshold, "ramp_shape": shape},
        source=(
            f"variational_dropout_{sparsity}_{shape}_{start}_{length}_{weight:.2E}_"
            f"{dropout}_{smoothing}_{threshold}"
        ),
    )


def _l0(sparsity, shape, start, length, weight, dropout, smoothing):
    # Plain Adam on the gates, as the reference (no gate learning-rate boost).
    return PaperRun(
        start, start + length, None, dropout, smoothing,
        method_args={"l0_weight": weight, "ramp_shape": shape, "gate_lr_multiplier": 1.0},
        source=(
            f"l0_regularization_{sparsity}_{shape}_{start}_{length}_{weight:.9f}_"
            f"{dropout}_{smoothing}"
        ),
    )


def _mp(*args):
    return _pruning("magnitude_pruning", *args)


def _rp(*args):
    return _pruning("random_pruning", *args)


#: (method, sparsity) -> the released run's settings.
PAPER_RUNS = {
    ("magnitude", 0.5): _mp(0.5, 100_000, 400_000, 10_000, 0.1, 0.1),
    ("magnitude", 0.6): _mp(0.6, 100_000, 400_000, 1_000, 0.1, 0.1),
    ("magnitude", 0.7): _mp(0.7, 100_000, 300_000, 1_000, 0.1, 0.1),
    ("magnitude", 0.8): _mp(0.8, 200_000, 400_000, 10_000, 0.0, 0.1),
    ("magnitude", 0.9): _mp(0.9, 0, 400_000, 10_000, 0.0, 0.1),
    ("magnitude", 0.95): _mp(0.95, 100_000, 300_000, 1_000, 0.0, 0.1),
    ("magnitude", 0.98): _mp(0.98, 0, 300_000, 1_000, 0.0, 0.0),
    ("random", 0.5): _rp(0.5, 200_000, 500_000, 1_000, 0.0, 0.1),
    ("random", 0.6): _rp(0.6, 0, 300_000, 1_000, 0.0, 0.1),
    ("random", 0.7): _rp(0.7, 0, 400_000, 1_000, 0.0, 0.1),
    ("random", 0.8): _rp(0.8, 0, 300_000, 10_000, 0.0, 0.1),
    ("random", 0.9): _rp(0.9, 0, 100_000, 1_000, 0.0, 0.1),
    ("random", 0.95): _rp(0.95, 0, 100_000, 1_000, 0.0, 0.0),
    ("random", 0.98): _rp(0.98, 0, 100_000, 1_000, 0.0, 0.0),
    ("variational_dropout", 0.5): _vd(0.5, "cubic", 400_000, 100_000, 2.22e-8, 0.1, 0.1, 2.5),
    ("variational_dropout", 0.6): _vd(0.6, "linear", 0, 500_000, 2.22e-8, 0.0, 0.1, 2.5),
    ("variational_dropout", 0.7): _vd(0.7, "linear", 0, 500_000, 2.22e-8, 0.0, 0.0, 1.5),
    ("variational_dropout", 0.8): _vd(0.8, "cubic", 0, 300_000, 2.22e-8, 0.0, 0.1, 1.5),
    ("variational_dropout", 0.9): _vd(0.9, "cubic", 0, 200_000, 8.89e-8, 0.0, 0.1, 2.5),
    ("variational_dropout", 0.95): _vd(0.95, "cubic", 0, 200_000, 2.22e-7, 0.0, 0.0, 2.5),
    ("variational_dropout", 0.98): _vd(0.98, "linear", 0, 1, 2.22e-7, 0.0, 0.1, 2.0),
    ("l0", 0.5): _l0(0.5, "cubic", 100_000, 200_000, 2.89e-7, 0.0, 0.1),
    ("l0", 0.6): _l0(0.6, "cubic", 200_000, 100_000, 7.78e-7, 0.0, 0.0),
    ("l0", 0.7): _l0(0.7, "cubic", 0, 100_000, 2.89e-7, 0.0, 0.0),
    ("l0", 0.8): _l0(0.8, "linear", 0, 100_000, 5.56e-7, 0.0, 0.0),
    ("l0", 0.9): _l0(0.9, "cubic", 200_000, 100_000, 2.222e-6, 0.1, 0.1),
    ("l0", 0.95): _l0(0.95, "cubic", 0, 400_000, 2.222e-6, 0.0, 0.0),
    ("l0", 0.98): _l0(0.98, "linear", 0, 1, 2.222e-6, 0.0, 0.1),
}

_field = config_lib.field


@dataclasses.dataclass(frozen=True)
class TransformerConfig(config_lib.RunConfig):
    """A Transformer run (defaults: the paper's recipe).

    Fields left None are filled by `resolve`: from the paper's released run
    for this method and sparsity when there is one, else from the defaults
    their help names.
    """

    task: str = _field("transformer", "the task")
    # Model.
    num_layers: int = _field(6, "encoder (and decoder) layers", minimum=1)
    hidden_size: int = _field(512, "model width d_model", minimum=1)
    num_heads: int = _field(8, "attention heads (must divide hidden_size)", minimum=1)
    filter_size: int = _field(2048, "feed-forward width", minimum=1)
    dropout: float = _field(
        None, "residual and attention dropout (default: the paper run's, else 0.1)",
        float, minimum=0.0, below=1.0,
    )
    label_smoothing: float = _field(
        None, "label smoothing (default: the paper run's, else 0.1)", float, minimum=0.0, below=1.0
    )
    embedding_sparsity: float = _field(
        None, "the shared embedding/softmax matrix's own sparsity (default: "
        "the target; 0 keeps it dense, the paper's mpfc runs)", float, minimum=0.0, below=1.0,
    )
    # Data.
    dataset: str = _field("wmt14_translate/de-en", "TFDS translation dataset")
    source_language: str = _field("en", "source language (a feature of the dataset)")
    target_language: str = _field("de", "target language (a feature of the dataset)")
    eval_split: str = _field("test", "split evaluated (wmt14: test = newstest2014)")
    max_length: int = _field(64, "longest training pair in tokens (longer pairs are dropped)", minimum=2)
    vocabulary: str = _field(
        None, "SentencePiece model to use (default: MODEL_DIR/vocab.spm, built "
        "from the training text when missing)", str,
    )
    vocabulary_size: int = _field(32768, "size of the shared subword vocabulary", minimum=8)
    vocabulary_sentences: int = _field(
        1_000_000, "training sentences (per language) the vocabulary is built from", minimum=1
    )
    shuffle_buffer: int = _field(100_000, "sentence pairs in the shuffle buffer", minimum=1)
    # Optimization (batch_size counts tokens).
    steps: int = _field(PAPER_STEPS, "training steps", minimum=1)
    batch_size: int = _field(
        PAPER_BATCH_TOKENS, "tokens per global batch (source or target, padding included)", minimum=2
    )
    learning_rate: float = _field(2.0, "learning-rate constant (t2t: 2.0)", above=0.0)
    warmup_steps: int = _field(8000, "steps of linear warm-up", minimum=1)
    adam_beta1: float = _field(0.9, "Adam beta1", minimum=0.0, below=1.0)
    adam_beta2: float = _field(0.997, "Adam beta2", minimum=0.0, below=1.0)
    adam_epsilon: float = _field(1e-9, "Adam epsilon", above=0.0)
    # Evaluation and decoding.
    eval_batch_size: int = _field(64, "sentences per evaluation (and decoding) batch", minimum=1)
    beam_size: int = _field(4, "beams (1: greedy decoding)", minimum=1)
    alpha: float = _field(0.6, "length-penalty exponent of beam search", minimum=0.0)
    extra_decode_length: int = _field(
        50, "a translation may be this many tokens longer than its source", minimum=1
    )
    bleu_examples: int = _field(
        None, "test sentences translated for BLEU (default: all; 0: no BLEU)", int, minimum=0
    )
    vd_thresholds: tuple = _field(
        (), "variational dropout: also report BLEU and sparsity at these log-alpha "
        "thresholds (the paper swept 0,0.5,...,5)", "floats",
    )


FIELDS = config_lib.fields(TransformerConfig)

TINY = {
    "num_layers": 1,
    "hidden_size": 32,
    "num_heads": 4,
    "filter_size": 64,
    "synthetic_data": True,
    "vocabulary_size": 64,
    "max_length": 16,
    "steps": 8,
    "batch_size": 128,
    "warmup_steps": 4,
    "eval_batch_size": 8,
    "eval_steps": 2,
    "bleu_examples": 8,
    "beam_size": 2,
    "extra_decode_length": 4,
    "checkpoint_every": 4,
    "jit_compile": False,
}


def _presets():
    presets = {"tiny": TINY, DENSE: {"method": DENSE, "sparsity": 0.0}}
    presets.update(config_lib.method_presets(PAPER_METHODS, PAPER_SPARSITIES))
    # Dynamic sparse training (not in the paper): ERK, the methods' recipe.
    for name, preset in config_lib.method_presets(("set", "rigl"), PAPER_SPARSITIES).items():
        presets[name] = dict(preset, distribution="erk")
    for sparsity in PAPER_SPARSITIES:
        # sparse_transformer_mpfc_tpu: magnitude pruning, embedding and
        # softmax dense, 4096 tokens per batch.
        presets[f"mpfc_{round(sparsity * 100)}"] = {
            "method": "magnitude", "sparsity": sparsity,
            "embedding_sparsity": 0.0, "batch_size": 4096,
        }
    return presets


#: Named presets for `--config`: METHOD_PERCENT for each paper method and
#: sparsity (settings from `PAPER_RUNS`), `mpfc_PERCENT` (magnitude pruning
#: with the embedding kept dense), "dense", and "tiny" (a one-layer model on
#: synthetic token batches, for smoke tests).
PRESETS = _presets()


def paper_run(method, sparsity):
    """The released run for `method` at `sparsity`, or None."""
    return PAPER_RUNS.get((method, round(float(sparsity), 6)))


def resolve(config):
    """Checks `config` and fills its None fields from the paper's released
    run for this method and sparsity (steps scaled by `steps / 500000`):
    dropout, label smoothing, the schedule and `method_args`; without one,
    dropout and label smoothing are 0.1 and the method's recipe places the
    schedule.

    Raises:
        ValueError: naming the first bad value.
    """
    if config.hidden_size % config.num_heads:
        raise ValueError(
            f"num_heads {config.num_heads} does not divide hidden_size {config.hidden_size}"
        )
    if config.vd_thresholds and config.method != "variational_dropout":
        raise ValueError("vd_thresholds is for --method variational_dropout")
    run = paper_run(config.method, config.sparsity)
    if config.method == DENSE or config.variant is not None:
        run = None
    updates = {}
    if config.dropout is None:
        updates["dropout"] = run.dropout if run else 0.1
    if config.label_smoothing is None:
        updates["label_smoothing"] = run.label_smoothing if run else 0.1
    updates.update(config_lib.released_run_settings(config, run, PAPER_STEPS))
    resolved = dataclasses.replace(config, **updates)
    config_lib.check_common(resolved)
    return resolved
