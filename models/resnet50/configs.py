"""Training configurations: the defaults, the paper's presets, overrides.

A run is described by one flat, frozen `ResNet50Config`. It is built from the
defaults (the paper's ResNet-50 recipe), then a named preset (`--config`),
then single values (`--steps 1000`, `--set key=value`), and finally
`resolve` fills what was left to the paper (label smoothing and the sparsity
schedule of the released run with that method and sparsity) and checks
every value, raising a `ValueError` that names the bad one.

The paper's per-run settings come from the released checkpoints of
google-research/google-research, `state_of_sparsity/README.md` ("Trained
Checkpoints", commit 00f9a0b1b464b91ed6902f594e7be3b6067203a0), whose names
encode them: `standard_threshold_{sparsity}_{begin}_{end}_{frequency}_{label
smoothing}` for magnitude pruning, `standard_random_cumulative_...` for
random pruning, and `variational_dropout_{sparsity}_{begin}_{end}_{KL
weight}_{label smoothing}` for variational dropout, where begin and end
bound the linear ramp of the KL term's weight. They are the best run of each
grid (the README lists "the top performing checkpoints"); the full grids are
in `state_of_sparsity/results/sparse_rn50/technique_comparison/*.csv`. All
were trained for 128k steps at batch 1024; `resolve` scales their steps to
the run's `steps`.
"""

import dataclasses

from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib

#: Steps and batch size of every released ResNet-50 run.
PAPER_STEPS = 128_000
PAPER_BATCH_SIZE = 1024
PAPER_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
DENSE = config_lib.DENSE
#: The methods the paper compares (one preset per method and sparsity).
PAPER_METHODS = ("magnitude", "random", "variational_dropout", "l0")

# Variational dropout settings shared by all released ResNet-50 runs
# (sparse_rn50/resnet_model.py: log sigma^2 initialized to -15; README.md:
# "the log alpha threshold ... was 0.5 for all our models").
_VD_ARGS = {"log_sigma2_init": -15.0, "threshold": 0.5}
# KL weights of the released runs are multiples of 1 / 1,281,167 (ImageNet's
# training set size): 0.01 / N, 0.05 / N, ...
_IMAGENET_N = 1_281_167


@dataclasses.dataclass(frozen=True)
class PaperRun:
    """The settings of one released ResNet-50 run (at 128k steps).

    Attributes:
        begin_step: pruning begins (variational dropout: the KL ramp).
        end_step: pruning ends (variational dropout: the ramp's end).
        frequency: steps between mask updates (None where not used).
        label_smoothing: label smoothing of the run.
        method_args: further arguments of the method's recipe.
        source: the checkpoint (or results CSV row) they come from.
    """

    begin_step: int
    end_step: int
    frequency: object
    label_smoothing: float
    method_args: dict = dataclasses.field(default_factory=dict)
    source: str = ""


def _magnitude(sparsity, begin, end, frequency, smoothing):
    return PaperRun(
        begin, end, frequency, smoothing,
        source=f"standard_threshold_{sparsity}_{begin}_{end}_{frequency}_{smoothing}",
    )


def _random(sparsity, begin, end, frequency, smoothing):
    return PaperRun(
        begin, end, frequency, smoothing,
        source=(
            f"standard_random_cumulative_{sparsity}_{begin}_{end}_{frequency}"
            f"_{smoothing}"
        ),
    )


def _vd(sparsity, begin, end, kl_weight_times_n, smoothing, source=None):
    kl_weight = kl_weight_times_n / _IMAGENET_N
    return PaperRun(
        begin, end, None, smoothing,
        method_args={"kl_weight": kl_weight, **_VD_ARGS},
        source=source or (
            f"variational_dropout_{sparsity}_{begin}_{end}_{kl_weight:.12g}_"
            f"{smoothing}"
        ),
    )


#: (method, sparsity) -> the released run's settings.
PAPER_RUNS = {
    ("magnitude", 0.5): _magnitude(0.5, 40_000, 100_000, 2_000, 0.1),
    ("magnitude", 0.7): _magnitude(0.7, 40_000, 100_000, 4_000, 0.1),
    ("magnitude", 0.8): _magnitude(0.8, 40_000, 100_000, 2_000, 0.1),
    ("magnitude", 0.9): _magnitude(0.9, 40_000, 76_000, 2_000, 0.1),
    ("magnitude", 0.95): _magnitude(0.95, 40_000, 68_000, 2_000, 0.0),
    ("magnitude", 0.98): _magnitude(0.98, 40_000, 100_000, 2_000, 0.1),
    ("random", 0.5): _random(0.5, 20_000, 40_000, 4_000, 0.1),
    ("random", 0.7): _random(0.7, 8_000, 40_000, 8_000, 0.1),
    ("random", 0.8): _random(0.8, 0, 40_000, 8_000, 0.0),
    ("random", 0.9): _random(0.9, 0, 40_000, 2_000, 0.0),
    ("random", 0.95): _random(0.95, 0, 40_000, 2_000, 0.0),
    ("random", 0.98): _random(0.98, 20_000, 40_000, 8_000, 0.0),
    ("variational_dropout", 0.5): _vd(0.5, 8_000, 68_000, 0.01, 0.1),
    # No released 70% checkpoint: the run of rn50_variational_dropout.csv
    # whose global sparsity is closest to 70% with the best accuracy
    # (70.3% sparse, 76.21% top-1).
    ("variational_dropout", 0.7): _vd(
        0.7, 40_000, 100_000, 0.05, 0.0,
        source="rn50_variational_dropout.csv: 40000,100000,3.90269184267e-8,0",
    ),
    ("variational_dropout", 0.8): _vd(0.8, 40_000, 68_000, 0.05, 0.0),
    ("variational_dropout", 0.9): _vd(0.9, 20_000, 68_000, 0.1, 0.0),
    ("variational_dropout", 0.95): _vd(0.95, 40_000, 100_000, 0.5, 0.1),
    ("variational_dropout", 0.98): _vd(0.98, 8_000, 76_000, 1.0, 0.1),
    # l0: none. No released l0 ResNet-50 run reached 20% sparsity above 4%
    # top-1 (rn50_l0_regularization.csv); its presets use the recipe's
    # defaults.
}


_field = config_lib.field


@dataclasses.dataclass(frozen=True)
class ResNet50Config(config_lib.RunConfig):
    """A ResNet-50 run (defaults: the paper's recipe).

    Fields left None are filled in by `resolve`: from the paper's released
    run for this method and sparsity when there is one, else from the
    defaults the field's help names.
    """

    task: str = _field("resnet50", "the task")
    # Model.
    blocks: tuple = _field((3, 4, 6, 3), "bottleneck blocks per stage", "ints")
    base_width: int = _field(64, "channels of the first stage (ResNet-50: 64)", minimum=1)
    dense_first_conv: bool = _field(False, "keep the first convolution dense")
    last_layer_sparsity: float = _field(
        None, "the classifier's own sparsity (default: the target)", float, minimum=0.0, below=1.0
    )
    weight_decay: float = _field(1e-4, "L2 weight decay (wd * |w|^2 / 2)", minimum=0.0)
    # Data.
    dataset: str = _field("imagenet2012", "TFDS image classification dataset")
    manual_dir: str = _field(
        None, "folder of manually downloaded files (ImageNet's tars), used "
        "to prepare the dataset once", str
    )
    eval_split: str = _field(None, "split to evaluate (default: validation, else test)", str)
    num_classes: int = _field(None, "classes of synthetic data (default 1000)", int, minimum=1)
    image_size: int = _field(
        224, "training and evaluation image size (at least 32: five stride-2 steps)", minimum=32
    )
    shuffle_buffer: int = _field(10_000, "examples in the shuffle buffer", minimum=1)
    train_examples: int = _field(
        None, "examples per epoch (default: the train split's size)", int, minimum=1
    )
    # Optimization.
    steps: int = _field(PAPER_STEPS, "training steps", minimum=1)
    batch_size: int = _field(PAPER_BATCH_SIZE, "global batch size", minimum=1)
    learning_rate: float = _field(
        None, "peak learning rate (default 0.1 * batch_size / 256)", float, above=0.0
    )
    warmup_epochs: float = _field(5.0, "epochs of linear warm-up", minimum=0.0)
    decay_epochs: tuple = _field((30, 60, 80), "epochs where the rate is cut by 10", "ints")
    momentum: float = _field(0.9, "Nesterov momentum", minimum=0.0)
    label_smoothing: float = _field(
        None, "label smoothing (default: the paper run's, else 0.1)", float, minimum=0.0, below=1.0
    )
    eval_batch_size: int = _field(1000, "global evaluation batch size", minimum=1)


FIELDS = config_lib.fields(ResNet50Config)

TINY = {
    "blocks": (1, 1, 1, 1),
    "base_width": 8,
    "image_size": 32,
    "synthetic_data": True,
    "num_classes": 10,
    "steps": 24,
    "batch_size": 8,
    # Short "epochs" so the warm-up and learning rate matter in 24 steps.
    "train_examples": 64,
    "warmup_epochs": 1.0,
    "eval_batch_size": 8,
    "eval_steps": 2,
    "checkpoint_every": 8,
    # XLA compilation takes longer than a tiny run; and with a strategy over
    # logical CPUs XLA cannot place the replicas at all.
    "jit_compile": False,
}


def _presets():
    presets = {"tiny": TINY, DENSE: {"method": DENSE, "sparsity": 0.0}}
    presets.update(config_lib.method_presets(PAPER_METHODS, PAPER_SPARSITIES))
    presets.update(dynamic_sparse_presets())
    presets.update(units_presets())
    return presets


def units_presets():
    """Filter pruning (`tfs.Units()`: whole filters with every coupled
    channel, residual groups together) at 25, 50 and 75% of each group's
    filters, on magnitude pruning's schedule; the export is the shrunk
    model (`tfs.shrink`), physically smaller. Torch-Pruning's DepGraph
    removes about half the FLOPs of ResNet-50 at about 0.3 points of top-1
    (CVPR 2023)."""
    return {
        f"units_{round(fraction * 100)}": {
            "method": "magnitude", "sparsity": fraction, "structure": "units",
        }
        for fraction in (0.25, 0.5, 0.75)
    }


#: RigL's ImageNet update interval (100 steps at batch 4,096) in this
#: task's steps (batch 1,024): the same number of images between updates.
RIGL_FREQUENCY = 100 * 4096 // PAPER_BATCH_SIZE


def dynamic_sparse_presets():
    """RigL's ImageNet runs (google-research/rigl): ERK, drop fraction 0.3
    with cosine decay, an update every 100 steps until 75% of training (the
    methods' recipe), at 80% and 90%; `rigl_5x_*` trains 5x as long (the
    learning-rate schedule, warm-up and drops, scaled with it),
    `rigl_uniform_*` spreads the target uniformly; `set_*` is SET under the
    same settings. RigL updated every 100 steps of 4,096 images; at this
    task's batch the same images between updates take `RIGL_FREQUENCY`
    steps."""
    presets = {}
    for sparsity in (0.8, 0.9):
        percent = round(sparsity * 100)
        for method in ("rigl", "set"):
            presets[f"{method}_{percent}"] = {
                "method": method, "sparsity": sparsity, "distribution": "erk",
                "frequency": RIGL_FREQUENCY,
            }
        presets[f"rigl_uniform_{percent}"] = {
            "method": "rigl", "sparsity": sparsity, "frequency": RIGL_FREQUENCY
        }
        presets[f"rigl_5x_{percent}"] = {
            "method": "rigl", "sparsity": sparsity, "distribution": "erk",
            "frequency": RIGL_FREQUENCY, "steps": 5 * PAPER_STEPS,
            "decay_epochs": (150, 300, 400), "warmup_epochs": 25.0,
        }
    return presets


#: Named presets for `--config`: one per paper method and sparsity (whose
#: schedule and label smoothing `resolve` takes from `PAPER_RUNS`), "dense"
#: and "tiny" (a ResNet with one block per stage and 8 base channels, on
#: 32x32 synthetic images, for smoke tests).
PRESETS = _presets()


def parse_value(name, text):
    """Converts the text of `--name text` to a typed value (see
    `config_lib.parse_value`)."""
    return config_lib.parse_value(ResNet50Config, name, text)


def parse_assignment(text):
    """Parses one `--set key=value` into `(key, typed value)`."""
    return config_lib.parse_assignment(ResNet50Config, text)


def make_config(preset=None, overrides=None):
    """A resolved ResNet-50 config: defaults, then `preset`, then `overrides`.

    Raises:
        ValueError: unknown preset or field, or a bad value.
    """
    return config_lib.make_config(task_lib.get("resnet50"), preset, overrides)


def paper_run(method, sparsity):
    """The released run for `method` at `sparsity`, or None."""
    return PAPER_RUNS.get((method, round(float(sparsity), 6)))


def resolve(config):
    """Checks `config` and fills its None fields.

    Label smoothing, the schedule (`begin_step`, `end_step`, `frequency`)
    and `method_args` come from the paper's released run for this method
    and sparsity (steps scaled by `steps / 128000`) when there is one;
    otherwise label smoothing is 0.1 and the method's recipe places the
    schedule. The learning rate defaults to `0.1 * batch_size / 256`.

    Args:
        config: a `ResNet50Config`.

    Returns:
        A new `ResNet50Config` with those fields set.

    Raises:
        ValueError: naming the first bad value.
    """
    _check(config)
    run = paper_run(config.method, config.sparsity)
    updates = {}
    if config.learning_rate is None:
        updates["learning_rate"] = 0.1 * config.batch_size / 256
    if config.label_smoothing is None:
        updates["label_smoothing"] = run.label_smoothing if run else 0.1
    if config.method == DENSE:
        run = None
    updates.update(config_lib.released_run_settings(config, run, PAPER_STEPS))
    resolved = dataclasses.replace(config, **updates)
    config_lib.check_common(resolved)
    return resolved


def _check(config):
    """The ResNet-50 rules the field declarations cannot say."""
    if len(config.blocks) != 4 or min(config.blocks) < 1:
        raise ValueError(
            f"blocks must be four positive counts, got {config.blocks}"
        )
    if not config.synthetic_data and not config.dataset:
        raise ValueError("no dataset: pass --dataset NAME or --synthetic_data")
