"""Published results of Gale, Elsen & Hooker (2019), arXiv:1902.09574.

The numbers are the authors' released results, in the repository
google-research/google-research, directory `state_of_sparsity/`:

- Per technique and sparsity: the "Trained Checkpoints" tables of
  `state_of_sparsity/README.md` (commit
  00f9a0b1b464b91ed6902f594e7be3b6067203a0),
  which list the top-performing model of each technique at each sparsity,
  i.e. the frontier the paper plots. Sparsities are the table's labels
  (the nominal sparsity each checkpoint was trained for).
  Cross-checks against the per-run CSVs under `state_of_sparsity/results/`:
  ResNet-50 magnitude 50% = 76.53 and 98% = 57.9 are the best `accuracy`
  values at those sparsities in `sparse_rn50/technique_comparison/
  rn50_magnitude_pruning.csv` (0.7653, 0.5790); Transformer magnitude 50%,
  80% and 90% (26.33, 24.65, 23.26) are rows of `sparse_transformer/
  technique_comparison/transformer_magnitude_pruning.csv` with the
  hyperparameters that the checkpoints' names encode.
- Dense baselines: every run of `state_of_sparsity/results/sparse_rn50/
  technique_comparison/rn50_baselines.csv` (commit
  10bf941a5a0625bf27bb8443aa849e9b48fdd5f9) and `state_of_sparsity/results/
  sparse_transformer/technique_comparison/transformer_baselines.csv` (commit
  cb1559d73ea3c41468fa7adcac6eb5fafc7f6fcd).

Missing on purpose: ResNet-50 with l0 regularization. The README has no l0
ResNet-50 checkpoint, and in `sparse_rn50/technique_comparison/
rn50_l0_regularization.csv` every configuration that reached 20% global
sparsity or more has under 4% top-1 accuracy (the best, 40.5%, is at 0%
sparsity): there is no usable sparse l0 ResNet-50 point to record.
Magnitude pruning with the paper's extended, non-uniform schedule is kept as
"magnitude_extended".

Values are stored as published: ResNet-50 top-1 in percent, Transformer
BLEU (MOSES BLEU on newstest2014). `published_points` converts them to the
units of result rows (top-1 as a fraction).
"""

import dataclasses
import statistics

ARXIV_ID = "1902.09574"
CITATION = (
    "Gale, Elsen & Hooker (2019), The State of Sparsity in Deep Neural Networks"
)


@dataclasses.dataclass(frozen=True)
class PublishedTask:
    """The published results of one task.

    Attributes:
        metric: the result-row metric the numbers are for.
        scale: published value = row value * scale (100 for percentages).
        dense_runs: the metric of each dense baseline run, as published.
        methods: method name -> ((sparsity, value as published), ...).
    """

    metric: str
    scale: float
    dense_runs: tuple
    methods: dict


RESNET50 = PublishedTask(
    metric="top1",
    scale=100.0,
    # rn50_baselines.csv, column "Accuracy" (three runs).
    dense_runs=(76.67, 76.8, 76.59),
    # README.md, ResNet-50 "Top-1 Accuracy" table.
    methods={
        "magnitude": (
            (0.5, 76.53),
            (0.7, 76.38),
            (0.8, 75.58),
            (0.9, 73.91),
            (0.95, 70.59),
            (0.98, 57.9),
        ),
        "random": (
            (0.5, 74.59),
            (0.7, 72.2),
            (0.8, 70.21),
            (0.9, 65.0),
            (0.95, 58.04),
            (0.98, 43.99),
        ),
        "variational_dropout": (
            (0.5, 76.55),
            (0.8, 75.28),
            (0.9, 73.84),
            (0.95, 71.91),
            (0.98, 67.36),
        ),
        # README rows "Magnitude Pruning (extended/non-uniform)".
        "magnitude_extended": (
            (0.8, 76.52),
            (0.9, 75.16),
            (0.95, 72.71),
            (0.965, 69.26),
        ),
    },
)

TRANSFORMER = PublishedTask(
    # MOSES BLEU: Moses-tokenized, compounds split (the rows' bleu_tokenized).
    metric="bleu_tokenized",
    scale=1.0,
    # transformer_baselines.csv, column "MOSES BLEU" (five runs).
    dense_runs=(27.13, 27.39, 27.3, 27.52, 27.12),
    # README.md, Transformer "BLEU" table.
    methods={
        "magnitude": (
            (0.5, 26.33),
            (0.6, 25.94),
            (0.7, 25.21),
            (0.8, 24.65),
            (0.9, 23.26),
            (0.95, 20.75),
            (0.98, 16.37),
        ),
        "random": (
            (0.5, 24.56),
            (0.6, 24.45),
            (0.7, 24.01),
            (0.8, 23.15),
            (0.9, 20.67),
            (0.95, 17.42),
            (0.98, 10.94),
        ),
        "variational_dropout": (
            (0.5, 26.26),
            (0.6, 25.37),
            (0.7, 25.08),
            (0.8, 24.33),
            (0.9, 21.43),
            (0.95, 19.13),
            (0.98, 14.45),
        ),
        "l0": (
            (0.5, 26.72),
            (0.6, 26.16),
            (0.7, 25.29),
            (0.8, 24.15),
            (0.9, 20.05),
            (0.95, 19.78),
            (0.98, 16.83),
        ),
    },
)

PUBLISHED = {"resnet50": RESNET50, "transformer": TRANSFORMER}


@dataclasses.dataclass(frozen=True)
class FollowUp:
    """Published results of later work built on this paper's code.

    Attributes:
        citation: who and what.
        arxiv_id: the paper's arXiv id.
        source: where the numbers are published.
        results: a `PublishedTask` (its `dense_runs`: the dense baseline
            quoted next to them).
    """

    citation: str
    arxiv_id: str
    source: str
    results: PublishedTask


# RigL on ResNet-50 / ImageNet, ERK unless named: the README of
# google-research/rigl ("1x" and "5x" the dense run's training steps).
RIGL_RESNET50 = FollowUp(
    citation="Evci, Gale, Menick, Castro & Elsen (2020), Rigging the Lottery",
    arxiv_id="1911.11134",
    source="google-research/rigl README",
    results=PublishedTask(
        metric="top1",
        scale=100.0,
        dense_runs=(76.8,),
        methods={
            "rigl": ((0.8, 75.12), (0.9, 73.07)),
            "rigl_5x": ((0.8, 77.17), (0.9, 76.42)),
            "rigl_uniform": ((0.8, 74.60), (0.9, 72.02)),
        },
    ),
)

#: Later results on the same tasks, shown next to the paper's.
FOLLOW_UPS = {"resnet50": (RIGL_RESNET50,)}
#: Methods the paper ran without a usable result to record, and why.
NOT_PUBLISHED = {
    "resnet50": {
        "l0": "no released l0 run reached 20% sparsity above 4% top-1",
    },
}


def has_published(task, metric=None):
    """Whether the paper has results for `task` (and for `metric`, if given)."""
    published = PUBLISHED.get(task)
    return published is not None and metric in (None, published.metric)


def published_points(task):
    """The paper's sparse results for `task`, in result-row units.

    Args:
        task: "resnet50" or "transformer".

    Returns:
        A dict from method name to a list of (sparsity, metric value) pairs,
        sorted by sparsity; empty for tasks the paper did not run.
    """
    published = PUBLISHED.get(task)
    if published is None:
        return {}
    return in_row_units(published)


def follow_up_points(task):
    """Like `published_points`, for the `FOLLOW_UPS` of `task` (RigL)."""
    points = {}
    for follow_up in FOLLOW_UPS.get(task, ()):
        points.update(in_row_units(follow_up.results))
    return points


def in_row_units(published):
    return {
        method: [(sparsity, value / published.scale) for sparsity, value in pts]
        for method, pts in published.methods.items()
    }


def published_dense(task):
    """The paper's dense baseline for `task`, in result-row units.

    Args:
        task: "resnet50" or "transformer".

    Returns:
        (mean, sample std, number of runs), or None for other tasks.
    """
    published = PUBLISHED.get(task)
    if published is None:
        return None
    runs = [value / published.scale for value in published.dense_runs]
    return statistics.fmean(runs), statistics.stdev(runs), len(runs)


#: One-shot pruning of pretrained LLMs (`tf-sparsity oneshot` rows, tasks
#: named "oneshot_<model>"): WikiText-2 perplexity of LLaMA-2 as published
#: in the README of locuslab/wanda (Sun, Liu, Bair & Kolter (2023), A Simple
#: and Effective Pruning Approach for Large Language Models, arXiv:2306.11695).
#: model -> (dense, {method: perplexity at 50% unstructured or 2:4}).
ONESHOT_TASK_PREFIX = "oneshot_"
ONESHOT_SOURCE = (
    "Sun, Liu, Bair & Kolter (2023), Wanda, arXiv:2306.11695; locuslab/wanda "
    "README: LLaMA-2, WikiText-2 perplexity"
)
ONESHOT_ANCHORS = {
    "LLaMA-2 7B": (5.12, {"magnitude": 14.89, "sparsegpt": 6.51, "wanda": 6.42,
                          "magnitude_2:4": 54.59, "sparsegpt_2:4": 10.17, "wanda_2:4": 11.02}),
    "LLaMA-2 13B": (4.57, {"magnitude": 6.37, "sparsegpt": 5.63, "wanda": 5.56,
                           "magnitude_2:4": 8.33, "sparsegpt_2:4": 8.32, "wanda_2:4": 8.27}),
    "LLaMA-2 70B": (3.12, {"magnitude": 4.98, "sparsegpt": 3.98, "wanda": 3.98,
                           "magnitude_2:4": 6.33, "sparsegpt_2:4": 5.40, "wanda_2:4": 5.16}),
}


def oneshot_anchor_table():
    """The published one-shot anchors as Markdown lines."""
    models = list(ONESHOT_ANCHORS)
    methods = list(next(iter(ONESHOT_ANCHORS.values()))[1])
    lines = [
        f"Published one-shot results ({ONESHOT_SOURCE}; 50% unstructured, or 2:4):",
        "",
        "| method | " + " | ".join(models) + " |",
        "|---" * (len(models) + 1) + "|",
        "| dense | " + " | ".join(f"{ONESHOT_ANCHORS[m][0]:.2f}" for m in models) + " |",
    ]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(f"{ONESHOT_ANCHORS[m][1][method]:.2f}" for m in models) + " |")
    return lines
