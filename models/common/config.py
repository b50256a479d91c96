"""Run configurations shared by every task: fields, presets, overrides.

A run is one flat, frozen dataclass: `RunConfig` (the fields every task
has) or a task's subclass of it. Each field declares its help text and, where
it has them, its choices and bounds; `check_fields` validates them all in one
loop, so a task adds fields without writing checks for them. A config is
built from the class defaults, then a named preset (`--config`), then single
values (`--steps 1000`, `--set key=value`), and the task's `resolve` then
fills what was left to it (e.g. the paper's settings for that run).
"""

import dataclasses
import json
import numbers
import pathlib

from tf_sparsity_models.common import methods as methods_lib

DENSE = "dense"
#: Runs that retrain the masks a finished run learned (the paper's Section 6).
VARIANTS = ("lottery", "scratch_e", "scratch_b", "distribution_only")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def method_names():
    """Every method a run can use: the library's methods and "dense"."""
    return (DENSE, *methods_lib.names())


def field(
    default, help, kind=None, choices=None, minimum=None, maximum=None, above=None, below=None
):
    """A config field.

    Args:
        default: the default value.
        help: the `--help` text.
        kind: how a typed value is parsed when the default does not say
            (None defaults): int, float, str, bool, "ints" or "floats"
            (comma-separated) or "json" (an object).
        choices: allowed values, or a function returning them.
        minimum: the smallest allowed value (None: no bound).
        maximum: the largest allowed value.
        above: a strict lower bound (learning rates: above 0).
        below: a strict upper bound (sparsities: below 1).
    """
    metadata = dict(
        help=help, kind=kind, choices=choices, minimum=minimum, maximum=maximum,
        above=above, below=below,
    )
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The fields every task's run has (tasks subclass it to add theirs)."""

    # What to train.
    task: str = field(None, "the task", str)
    method: str = field(DENSE, "sparsity method", choices=method_names)
    sparsity: float = field(0.0, "target sparsity, in (0, 1); 0 for dense", minimum=0.0, below=1.0)
    seed: int = field(0, "seed of weights, data order and random methods", minimum=0)
    deterministic: bool = field(
        False, "deterministic ops (TensorFlow's op determinism): the same command gives "
        "bit-identical masks, weights and metrics, also when killed and resumed; costs "
        "speed (input pipelines with random augmentation run serially, a resumed run "
        "replays the input of the steps done)"
    )
    # Data.
    data_dir: str = field(None, "TFDS data directory (default: TFDS's)", str)
    synthetic_data: bool = field(False, "random data instead of a dataset")
    # Optimization.
    steps: int = field(1000, "training steps", minimum=1)
    batch_size: int = field(128, "global batch size", minimum=1)
    mixed_precision: str = field(
        None, "Keras dtype policy (default: float32)", str, choices=PRECISIONS
    )
    jit_compile: bool = field(True, "compile the training step with XLA")
    steps_per_execution: int = field(1, "training steps per call to the device", minimum=1)
    # Sparsity schedule (the method's recipe fills what is None).
    begin_step: int = field(None, "first pruning step (or start of the penalty ramp)", int, minimum=0)
    end_step: int = field(None, "last pruning step (or end of the penalty ramp)", int, minimum=0)
    frequency: int = field(None, "steps between mask updates", int, minimum=1)
    structure: str = field(
        None, "pruning structure: unstructured (default), RxC blocks (1x4: "
        "LiteRT's sparse kernel), N:M (2:4), units (whole neurons and filters; "
        "the export is the shrunk model) or heads (attention heads)", str
    )
    distribution: str = field(
        "uniform", "how the target is spread over layers: uniform (with the "
        "task's dense layers and targets) or erk (Erdos-Renyi-Kernel, the "
        "dynamic sparse methods' usual choice; same dense layers)",
        choices=("uniform", "erk"),
    )
    method_args: dict = field(None, "further method arguments, as JSON", "json")
    # Evaluation, checkpoints, outputs.
    eval_batch_size: int = field(128, "global evaluation batch size", minimum=1)
    eval_steps: int = field(
        None, "evaluation batches (default: the whole split; 0: no evaluation)", int, minimum=0
    )
    validation_freq: int = field(0, "also evaluate every N checkpoints (0: only at the end)", minimum=0)
    checkpoint_every: int = field(1000, "steps between backups (and log points)", minimum=1)
    strategy: str = field("default", "tf.distribute strategy", choices=STRATEGIES)
    tpu: str = field(
        None, "TPU name or grpc:// address for --strategy tpu ('local' on a "
        "TPU VM; default: from the environment)", str
    )
    export: bool = field(True, "write the SavedModel for TF Serving")
    # Learned masks, trained again (lottery ticket, from scratch).
    mask_from: str = field(
        None, "model_dir of a finished pruning run whose masks this run "
        "trains with (needs --variant)", str
    )
    variant: str = field(
        None, "how the masks of --mask_from are trained: lottery (the run's "
        "initial weights, or those at --rewind_step), scratch_e (fresh "
        "weights, same steps), scratch_b (fresh weights, --scratch_multiplier "
        "times the steps), distribution_only (random masks with the learned "
        "per-layer sparsities)", str, choices=VARIANTS
    )
    rewind_step: int = field(
        None, "a pruning run also saves its weights at this step; a lottery "
        "run starts from them (late rewinding)", int, minimum=0
    )
    scratch_multiplier: float = field(2.0, "scratch_b trains this many times longer", minimum=1.0)
    scale_init: bool = field(
        False, "scratch variants: scale each kernel's fresh initialization by "
        "1/sqrt(density), the reference code's sparse-aware initialization"
    )

    def to_dict(self):
        """The config as a JSON-friendly dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def fields(config_class):
    return {f.name: f for f in dataclasses.fields(config_class)}


def field_choices(spec):
    """The allowed values of the field `spec` (a dataclass field), or None."""
    choices = spec.metadata.get("choices")
    return choices() if callable(choices) else choices


def check_fields(config):
    """Checks every field against its declared choices and bounds.

    Raises:
        ValueError: naming the first bad field and its value.
    """
    for name, spec in fields(type(config)).items():
        value = getattr(config, name)
        if value is None:
            continue
        meta = spec.metadata
        choices = field_choices(spec)
        if choices is not None and value not in choices:
            raise ValueError(f"unknown {name} {value!r} (known: {', '.join(map(str, choices))})")
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            continue
        if meta.get("minimum") is not None and value < meta["minimum"]:
            raise ValueError(f"{name} must be at least {meta['minimum']}, got {value}")
        if meta.get("maximum") is not None and value > meta["maximum"]:
            raise ValueError(f"{name} must be at most {meta['maximum']}, got {value}")
        if meta.get("above") is not None and value <= meta["above"]:
            raise ValueError(f"{name} must be above {meta['above']}, got {value}")
        if meta.get("below") is not None and value >= meta["below"]:
            raise ValueError(f"{name} must be below {meta['below']}, got {value}")


def check_common(config):
    """The cross-field rules every run follows."""
    check_fields(config)
    # (A variant's sparsity is its source run's, whatever method that was.)
    if config.method == DENSE and config.variant is None:
        if config.sparsity != 0:
            raise ValueError(
                f"sparsity {config.sparsity} with method 'dense': a dense run has sparsity 0"
            )
    elif config.variant is None and not 0.0 < config.sparsity < 1.0:
        raise ValueError(
            f"sparsity {config.sparsity} is not in (0, 1) for method {config.method!r}"
        )
    # Keras runs whole groups of steps_per_execution steps: backups and the
    # end of training must fall between groups.
    for name in ("steps", "checkpoint_every"):
        if getattr(config, name) % config.steps_per_execution:
            raise ValueError(
                f"{name} {getattr(config, name)} is not a multiple of "
                f"steps_per_execution {config.steps_per_execution}"
            )
    if config.synthetic_data and config.data_dir is not None:
        raise ValueError(
            f"--data_dir {config.data_dir} is given, but --synthetic_data "
            "reads no dataset: drop one of them"
        )
    if (config.mask_from is None) != (config.variant is None):
        raise ValueError("--mask_from and --variant go together: give both, or neither")
    # A run saves its weights at rewind_step (a lottery variant's names the
    # source run's): only at a step it runs and its callbacks see.
    if config.rewind_step is not None and config.variant is None:
        if config.rewind_step >= config.steps:
            raise ValueError(
                f"rewind_step {config.rewind_step} is not before the end of training "
                f"(steps {config.steps}, the last is step {config.steps - 1}): no rewind "
                "weights would be saved"
            )
        if config.rewind_step % config.steps_per_execution:
            raise ValueError(
                f"rewind_step {config.rewind_step} is not a multiple of steps_per_execution "
                f"{config.steps_per_execution}: callbacks see only every "
                f"{config.steps_per_execution}th step, so no rewind weights would be saved"
            )
    if (
        config.begin_step is not None
        and config.end_step is not None
        and config.end_step <= config.begin_step
    ):
        raise ValueError(
            f"end_step {config.end_step} must be after begin_step {config.begin_step}"
        )


def method_presets(methods, sparsities):
    """`{"METHOD_PERCENT": {"method", "sparsity"}}` for every pair, e.g.
    `magnitude_90`: the presets of a task's paper grid."""
    return {
        f"{method}_{round(sparsity * 100)}": {"method": method, "sparsity": sparsity}
        for method in methods
        for sparsity in sparsities
    }


def released_run_settings(config, run, paper_steps):
    """Field updates from a released paper run, for the fields `config`
    left None: its schedule (`begin_step`, `end_step`, `frequency`, scaled
    by `config.steps / paper_steps`) and its `method_args` ({} without a
    run).

    Args:
        config: a task's config.
        run: the released run (with `begin_step`, `end_step`, `frequency`
            and `method_args`), or None.
        paper_steps: the steps the released runs trained for.
    """
    updates = {}
    if run is not None:
        scale = config.steps / paper_steps
        if config.begin_step is None:
            updates["begin_step"] = round(run.begin_step * scale)
        if config.end_step is None:
            begin = updates.get("begin_step", config.begin_step)
            updates["end_step"] = max(round(run.end_step * scale), begin + 1)
        if config.frequency is None and run.frequency is not None:
            updates["frequency"] = max(round(run.frequency * scale), 1)
        if config.method_args is None:
            updates["method_args"] = dict(run.method_args)
    if config.method_args is None and "method_args" not in updates:
        updates["method_args"] = {}
    return updates


def parse_value(config_class, name, text):
    """Converts the text of `--name text` (or `--set name=text`) to a value.

    "none" means None, booleans are true/false/1/0/yes/no, "ints" fields are
    comma-separated, "json" fields JSON objects.

    Raises:
        ValueError: unknown field or a value of the wrong type.
    """
    spec = get_field(config_class, name)
    kind = spec.metadata["kind"] or type(spec.default)
    if isinstance(text, str) and text.strip().lower() in ("none", "null"):
        return None
    try:
        if kind is bool:
            return _parse_bool(text)
        if kind == "ints":
            return tuple(int(part) for part in str(text).split(",") if part.strip())
        if kind == "floats":
            return tuple(float(part) for part in str(text).split(",") if part.strip())
        if kind == "json":
            value = json.loads(text) if isinstance(text, str) else text
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return str(text)
    except ValueError as error:
        raise ValueError(
            f"bad value {text!r} for {name}: {_describe_kind(kind)} ({error})"
        ) from None


def parse_assignment(config_class, text):
    """Parses one `--set key=value` into `(key, typed value)`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects key=value, got {text!r}")
    return key.strip(), parse_value(config_class, key.strip(), value)


def make_config(task, preset=None, overrides=None):
    """Builds and resolves a task's config: defaults, `preset`, `overrides`.

    Args:
        task: a `Task`.
        preset: a name in `task.presets`, or None.
        overrides: dict of field values (already typed), applied last.

    Returns:
        The resolved config.

    Raises:
        ValueError: unknown preset or field, or a bad value.
    """
    overrides = dict(overrides or {})
    values = {"task": task.name}
    if overrides.get("mask_from") is not None:
        # The same training as the run the masks come from, unless changed.
        values.update(_source_hparams(task, overrides["mask_from"]))
    if preset is not None:
        if preset not in task.presets:
            raise ValueError(
                f"unknown config preset {preset!r} for task {task.name!r} "
                f"(known: {', '.join(sorted(task.presets))})"
            )
        values.update(task.presets[preset])
    for name, value in overrides.items():
        get_field(task.config_class, name)
        values[name] = value
    if values["task"] != task.name:
        raise ValueError(f"task {values['task']!r} given to the {task.name!r} task")
    config = task.config_class(**values)
    check_common(config)
    if config.variant is not None:
        config = _variant_config(task, config)
    return task.resolve(config)


def _source_hparams(task, mask_from):
    """The config fields of the finished run in `mask_from`."""
    row_path = pathlib.Path(mask_from) / "result.json"
    masks_path = pathlib.Path(mask_from) / "masks.npz"
    for path in (row_path, masks_path):
        if not path.exists():
            raise ValueError(
                f"--mask_from {mask_from}: no {path.name}; give the model_dir "
                "of a finished pruning run"
            )
    row = json.loads(row_path.read_text())
    known = fields(task.config_class)
    hparams = {k: v for k, v in (row.get("hparams") or {}).items() if k in known}
    for name, value in hparams.items():
        if isinstance(value, list):  # JSON has no tuples.
            hparams[name] = tuple(value)
    # The source's own lineage and outputs are not inherited.
    for name in ("mask_from", "variant", "rewind_step"):
        hparams.pop(name, None)
    return hparams


def _variant_config(task, config):
    """A variant trains the learned masks, fixed: method `fixed_mask` at the
    source's sparsity, its schedule dropped; scratch_b trains longer."""
    updates = dict(
        method="fixed_mask", begin_step=None, end_step=None, frequency=None, method_args={}
    )
    if config.variant == "scratch_b":
        return task.stretch(dataclasses.replace(config, **updates), config.scratch_multiplier)
    if config.variant != "lottery" and config.rewind_step is not None:
        raise ValueError("--rewind_step is for the lottery variant")
    return dataclasses.replace(config, **updates)


def get_field(config_class, name):
    known = fields(config_class)
    if name not in known:
        raise ValueError(f"unknown config key {name!r} (known: {', '.join(sorted(known))})")
    return known[name]


def default_text(spec):
    if isinstance(spec.default, tuple):
        return ",".join(str(part) for part in spec.default)
    return str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)


def _parse_bool(text):
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _describe_kind(kind):
    return {
        bool: "expected true or false",
        int: "expected an integer",
        float: "expected a number",
        "ints": "expected comma-separated integers",
        "floats": "expected comma-separated numbers",
        "json": "expected a JSON object",
    }.get(kind, "expected text")
