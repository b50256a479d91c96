"""Hyperparameter sweeps: expand a grid into `tf-sparsity train` runs.

A grid spec is a dict (or a JSON / YAML file holding one):

```json
{
  "task": "resnet50",
  "methods": ["dense", "magnitude", "random"],
  "sparsities": [0.5, 0.9, 0.98],
  "seeds": [0, 1, 2],
  "hparams": {"learning_rate": [0.1, 0.01]},
  "args": {"steps": 20000, "data_dir": "/data"}
}
```

Every (method, sparsity, seed, hparams combination) becomes one run, except
that "dense" ignores `sparsities` and runs at sparsity 0 (a dense model has
no sparsity to vary). `hparams` are varied (cartesian product) and name the
run; `args` are passed unchanged to every run. Each run gets a deterministic
`run_id` built from what varies, and writes into `OUT/run_id`; a run whose
`OUT/run_id/result.json` exists is finished, so a sweep can be resumed.

`hparams` and `args` hold `tf-sparsity train` flags: the task's config
fields, `config` (a preset), `set` (one KEY=VALUE) and `verbose`. Before
anything is printed or run, every run's config is built and checked as
`tf-sparsity train` would (`check_runs`: the task, the flag names, their
values and bounds), so a typo fails the sweep, not each of its runs.
"""

import dataclasses
import difflib
import itertools
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

from tf_sparsity_models.common import methods as methods_lib
from tf_sparsity_models.reporting import rows as rows_lib

TRAIN_COMMAND = ("tf-sparsity", "train")
SPEC_KEYS = ("task", "methods", "sparsities", "seeds", "hparams", "args")
DENSE_METHOD = "dense"
# Flags every run sets itself; hparams and args may not override them.
RESERVED_FLAGS = ("task", "method", "sparsity", "seed", "model_dir")
MODES = ("local", "print")
#: `tf-sparsity train` flags a spec may hold besides the task's config fields.
TRAIN_FLAGS = ("config", "set", "verbose")
#: `tf-sparsity train` flags a spec may not hold, and why.
UNSWEPT_FLAGS = {
    "overwrite": "a sweep skips finished runs; delete a run's directory to rerun it",
    "list_configs": "it trains nothing",
}
_FLAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def load_spec(path):
    """Reads a grid spec from a JSON or YAML file.

    Args:
        path: a `.json`, `.yaml` or `.yml` file.

    Returns:
        The spec dict (not yet validated; see `validate_spec`).

    Raises:
        ValueError: when the file is missing, unparsable, of another type,
            or YAML while PyYAML is not installed.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{path}: cannot read the spec: {error}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON: {error}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            # Only YAML specs need PyYAML (JSON ones need nothing).
            import yaml
        except ImportError:
            raise ValueError(
                f"{path}: reading YAML specs needs PyYAML "
                "(pip install pyyaml); or write the spec as JSON"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: invalid YAML: {error}") from None
    raise ValueError(f"{path}: a sweep spec must be .json, .yaml or .yml")


def validate_spec(spec):
    """Checks a grid spec and fills in its defaults.

    Args:
        spec: the spec dict (see module doc). `seeds` defaults to [0],
            `hparams` and `args` to {}; `sparsities` may be left out when
            the only method is "dense".

    Returns:
        A new, normalized spec dict.

    Raises:
        ValueError: naming the first problem found.
    """
    if not isinstance(spec, dict):
        raise ValueError(
            f"sweep spec must be a mapping, got {type(spec).__name__}"
        )
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"sweep spec: unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(SPEC_KEYS)})"
        )
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ValueError("sweep spec: 'task' must be a non-empty string")
    methods = _unique_list(spec, "methods", required=True)
    known = known_methods()
    for method in methods:
        if not isinstance(method, str) or not method:
            raise ValueError(
                "sweep spec: 'methods' must hold non-empty strings"
            )
        if method not in known:
            raise ValueError(
                f"sweep spec: unknown method {method!r} (known: "
                f"{', '.join(sorted(known))}); every run would fail"
            )
    only_dense = set(methods) == {DENSE_METHOD}
    sparsities = _unique_list(spec, "sparsities", required=not only_dense)
    for sparsity in sparsities:
        if not _is_number(sparsity) or not 0.0 <= sparsity < 1.0:
            raise ValueError(
                f"sweep spec: sparsity {sparsity!r} is not a number in [0, 1)"
            )
    seeds = _unique_list(spec, "seeds", default=[0])
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"sweep spec: seed {seed!r} is not an integer")
    hparams = spec.get("hparams") or {}
    args = spec.get("args") or {}
    for name, mapping in (("hparams", hparams), ("args", args)):
        if not isinstance(mapping, dict):
            raise ValueError(f"sweep spec: '{name}' must be a mapping")
        for key in mapping:
            if not isinstance(key, str) or not _FLAG_NAME.fullmatch(key):
                raise ValueError(
                    f"sweep spec: bad flag name {key!r} in '{name}'"
                )
            if key in RESERVED_FLAGS:
                raise ValueError(
                    f"sweep spec: '{key}' in '{name}' is set by the sweep"
                )
    for key, values in hparams.items():
        values = _unique_list(hparams, key, required=True, where="hparams")
        for value in values:
            _check_flag_value(value, f"hparams.{key}")
    for key, value in args.items():
        _check_flag_value(value, f"args.{key}")
    both = sorted(set(hparams) & set(args))
    if both:
        raise ValueError(
            f"sweep spec: {', '.join(both)} both in 'hparams' and 'args'"
        )
    return {
        "task": task,
        "methods": list(methods),
        "sparsities": [float(s) for s in sparsities],
        "seeds": list(seeds),
        "hparams": {key: list(values) for key, values in hparams.items()},
        "args": dict(args),
    }


def expand_grid(spec, out_dir=None):
    """Turns a grid spec into one config per training run.

    Args:
        spec: a spec dict, or the path of a JSON / YAML spec file.
        out_dir: the sweep's output directory; each run's `model_dir` is
            `out_dir/run_id` (just `run_id` when `out_dir` is None).

    Returns:
        A list of run configs, dicts with keys `run_id`, `task`, `method`,
        `sparsity`, `seed`, `hparams`, `args` and `model_dir`, in grid order
        (method, sparsity, hparams, seed).

    Raises:
        ValueError: on a malformed spec, or when two runs would share an id.
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = load_spec(spec)
    spec = validate_spec(spec)
    hparam_names = sorted(spec["hparams"])
    hparam_grid = [
        dict(zip(hparam_names, values))
        for values in itertools.product(
            *(spec["hparams"][name] for name in hparam_names)
        )
    ]
    configs = []
    seen = {}
    for method in spec["methods"]:
        sparsities = [0.0] if method == DENSE_METHOD else spec["sparsities"]
        for sparsity, hparams, seed in itertools.product(
            sparsities, hparam_grid, spec["seeds"]
        ):
            run_id = make_run_id(spec["task"], method, sparsity, seed, hparams)
            run = (method, sparsity, seed, hparams)
            if run_id in seen:
                raise ValueError(
                    f"sweep spec: runs {seen[run_id]} and {run} would share "
                    f"the run id '{run_id}'"
                )
            seen[run_id] = run
            model_dir = run_id
            if out_dir is not None:
                model_dir = str(pathlib.Path(out_dir) / run_id)
            configs.append(
                {
                    "run_id": run_id,
                    "task": spec["task"],
                    "method": method,
                    "sparsity": sparsity,
                    "seed": seed,
                    "hparams": hparams,
                    "args": dict(spec["args"]),
                    "model_dir": model_dir,
                }
            )
    return configs


def check_runs(spec, configs):
    """Checks every run of a grid as `tf-sparsity train` checks its flags
    before training: the task exists, every flag in `hparams` and `args` is
    one of its flags, and each run's config has valid values (types,
    bounds, cross-field rules). The task's own `resolve` checks (which
    load its code, and Keras with it) are left to the runs.

    Imports the task's config module only, neither Keras nor TensorFlow.

    Args:
        spec: a validated spec (`validate_spec`).
        configs: its runs (`expand_grid`).

    Raises:
        ValueError: naming the spec entry (or the run) and the value at
            fault.
    """
    # The configs live beside the runner; importing them loads no Keras.
    from tf_sparsity_models.common import config as config_lib
    from tf_sparsity_models.common import task as task_lib

    try:
        config_class, presets = task_lib.config_spec(spec["task"])
    except ValueError as error:
        raise ValueError(f"sweep spec: {error}") from None
    fields = config_lib.fields(config_class)
    for where in ("hparams", "args"):
        for name in spec[where]:
            if name in UNSWEPT_FLAGS:
                raise ValueError(f"sweep spec: {where}.{name}: not in sweeps ({UNSWEPT_FLAGS[name]})")
            if name not in fields and name not in TRAIN_FLAGS:
                known = [*fields, *TRAIN_FLAGS]
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"sweep spec: {where}.{name} is not a flag of `tf-sparsity train "
                    f"--task {spec['task']}`{hint}"
                )
    for run in configs:
        try:
            _check_run(run, config_lib, config_class, presets)
        except ValueError as error:
            raise ValueError(f"sweep spec: run {run['run_id']}: {error}") from None


def _check_run(run, config_lib, config_class, presets):
    flags = {**run["args"], **run["hparams"]}
    values = {"task": run["task"]}
    preset = flags.get("config")
    if preset is not None:
        if preset not in presets:
            raise ValueError(
                f"unknown config preset {preset!r} (known: {', '.join(sorted(presets))})"
            )
        values.update(presets[preset])
    for name, value in flags.items():
        if name not in TRAIN_FLAGS:
            values[name] = config_lib.parse_value(config_class, name, _flag_text(value))
    values.update(method=run["method"], sparsity=run["sparsity"], seed=run["seed"])
    if "set" in flags:
        key, value = config_lib.parse_assignment(config_class, str(flags["set"]))
        values[key] = value
    config_lib.check_common(config_class(**values))


def known_methods():
    """Method names every task accepts: the library's methods and dense."""
    return {DENSE_METHOD, *methods_lib.names()}


def make_run_id(task, method, sparsity, seed, hparams=None):
    """A readable, deterministic id naming what varies in a run.

    E.g. `lenet300-magnitude-sp0.9-seed1-learning_rate0.01`. Characters that
    are awkward in file names or shells become "_".

    Args:
        task: the task.
        method: the method.
        sparsity: the target sparsity.
        seed: the seed.
        hparams: dict of the varied hyperparameters of the run.

    Returns:
        The run id.
    """
    parts = [task, method, f"sp{_flag_text(sparsity)}", f"seed{seed}"]
    for name in sorted(hparams or {}):
        parts.append(f"{name}{_flag_text(hparams[name])}")
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part) for part in parts)


def train_argv(config, command=TRAIN_COMMAND):
    """The `tf-sparsity train` command line of one run config.

    Args:
        config: a run config from `expand_grid`.
        command: the program and subcommand to start with.

    Returns:
        The argv list: command, the run's own flags, then its hparams and
        args in name order, each as `--name value`.
    """
    argv = list(command) + [
        "--task",
        config["task"],
        "--method",
        config["method"],
        "--sparsity",
        _flag_text(config["sparsity"]),
        "--seed",
        str(config["seed"]),
        "--model_dir",
        str(config["model_dir"]),
    ]
    flags = {**config["args"], **config["hparams"]}
    for name in sorted(flags):
        argv += [f"--{name}", _flag_text(flags[name])]
    return argv


def is_finished(config):
    """Whether a run has written its `result.json`."""
    result = pathlib.Path(config["model_dir"]) / rows_lib.RESULT_FILENAME
    return result.is_file()


@dataclasses.dataclass
class SweepSummary:
    """What a sweep did.

    Attributes:
        mode: "local" or "print".
        ran: run ids that ran and finished (local), or were printed (print).
        skipped: run ids skipped because their `result.json` existed.
        failed: (run id, reason) of runs that failed (local mode only).
    """

    mode: str = "local"
    ran: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)

    @property
    def total(self):
        return len(self.ran) + len(self.skipped) + len(self.failed)

    def as_dict(self):
        return {
            "mode": self.mode,
            "ran": list(self.ran),
            "skipped": list(self.skipped),
            "failed": [list(item) for item in self.failed],
            "total": self.total,
        }

    def __str__(self):
        if self.mode == "print":
            return (
                f"{self.total} runs: {len(self.ran)} printed, "
                f"{len(self.skipped)} skipped (finished)"
            )
        return (
            f"{self.total} runs: {len(self.ran)} ran, {len(self.skipped)} "
            f"skipped (finished), {len(self.failed)} failed"
        )


def run_sweep(
    spec,
    out_dir,
    mode="local",
    runner=None,
    print_file=None,
    skip_finished=True,
    log=None,
):
    """Runs, or prints the commands of, every run of a grid.

    Args:
        spec: a spec dict, or the path of a JSON / YAML spec file.
        out_dir: the sweep's output directory; runs write to
            `out_dir/run_id`.
        mode: "local" runs the commands one after another; "print" writes
            one shell command per line, e.g. for a cluster scheduler.
        runner: local mode only; a callable taking the argv list of one run
            and returning its exit status (None counts as 0). Defaults to
            `subprocess_runner`. A run fails when the runner raises, returns
            non-zero, or returns 0 without writing `result.json`; the sweep
            goes on with the next run.
        print_file: print mode only; a path or an open text file to write
            the commands to. Defaults to standard output.
        skip_finished: skip runs whose `result.json` exists (both modes).
        log: optional callable taking one progress line (local mode).

    Returns:
        A `SweepSummary`.

    Raises:
        ValueError: on a malformed spec, one that a run's `tf-sparsity
            train` would refuse (`check_runs`), or an unknown mode; before
            anything is printed or run.
    """
    if mode not in MODES:
        raise ValueError(
            f"unknown sweep mode '{mode}' (expected one of {MODES})"
        )
    if isinstance(spec, (str, os.PathLike)):
        spec = load_spec(spec)
    configs = expand_grid(spec, out_dir)
    check_runs(validate_spec(spec), configs)
    summary = SweepSummary(mode=mode)
    pending = []
    for config in configs:
        if skip_finished and is_finished(config):
            summary.skipped.append(config["run_id"])
        else:
            pending.append(config)
    if mode == "print":
        _print_commands(pending, print_file)
        summary.ran.extend(config["run_id"] for config in pending)
        return summary
    runner = runner or subprocess_runner
    for index, config in enumerate(pending, start=1):
        run_id = config["run_id"]
        if log:
            log(f"[{index}/{len(pending)}] {run_id}")
        pathlib.Path(config["model_dir"]).mkdir(parents=True, exist_ok=True)
        reason = _run_one(runner, config)
        if reason is None:
            summary.ran.append(run_id)
        else:
            summary.failed.append((run_id, reason))
            if log:
                log(f"[{index}/{len(pending)}] {run_id} failed: {reason}")
    return summary


def subprocess_runner(argv):
    """Runs one command, streaming its output; returns its exit status.

    When `argv[0]` is not on PATH, it is also looked for next to the running
    Python interpreter, so an un-activated virtual environment works.
    """
    program = shutil.which(argv[0])
    if program is None:
        sibling = pathlib.Path(sys.executable).with_name(argv[0])
        program = str(sibling) if sibling.is_file() else argv[0]
    return subprocess.run([program] + list(argv[1:]), check=False).returncode


def _run_one(runner, config):
    """Runs one config; returns None on success, else why it failed."""
    try:
        status = runner(train_argv(config))
    except Exception as error:  # A crashing runner fails one run, not all.
        return f"{type(error).__name__}: {error}"
    status = 0 if status is None else status
    if status != 0:
        return f"exit status {status}"
    if not is_finished(config):
        return f"exited 0 but wrote no {rows_lib.RESULT_FILENAME}"
    return None


def _print_commands(configs, print_file):
    lines = "".join(shlex.join(train_argv(c)) + "\n" for c in configs)
    if print_file is None:
        sys.stdout.write(lines)
    elif hasattr(print_file, "write"):
        print_file.write(lines)
    else:
        path = pathlib.Path(print_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines, encoding="utf-8")


def _unique_list(mapping, key, required=False, default=None, where=None):
    name = f"{where}.{key}" if where else key
    if key not in mapping or mapping[key] is None:
        if required:
            raise ValueError(f"sweep spec: '{name}' is required")
        return list(default or [])
    values = mapping[key]
    if not isinstance(values, list) or not values:
        raise ValueError(f"sweep spec: '{name}' must be a non-empty list")
    canonical = [json.dumps(value, sort_keys=True) for value in values]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"sweep spec: '{name}' has duplicate values")
    return values


def _check_flag_value(value, name):
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(
            f"sweep spec: {name} must be a string, number or boolean, "
            f"got {value!r}"
        )


def _flag_text(value):
    # JSON spelling for booleans, so `--flag true` parses the same way the
    # spec was written.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    return str(value)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
