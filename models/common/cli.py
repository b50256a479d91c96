"""`tf-sparsity train`: every reference task from one command.

```
tf-sparsity train --task resnet50 --method magnitude --sparsity 0.9 \\
    --model_dir runs/rn50_mp90 --data_dir ~/tensorflow_datasets
```

`--task` is read first, so the flags (and `--help`) are that task's config
fields: its defaults, then `--config PRESET`, then one flag per field
(`--steps 1000`, `--batch_size 256`, ...), then `--set key=value`
(repeated), later ones winning. Bad values raise `ValueError`, which the
`tf-sparsity` entry point prints as one `error: ...` line (exit code 2).
"""

import argparse
import sys
import warnings

from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib

DEFAULT_TASK = "resnet50"


def task_from_argv(argv):
    """The `--task` given in `argv` (the default task if none)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--task", default=DEFAULT_TASK)
    known, _ = parser.parse_known_args(argv)
    return known.task


def add_train_parser(subparsers, task_name=DEFAULT_TASK):
    """Registers the `train` subcommand, with the flags of `task_name`
    (None: without config flags, for parsers of other commands)."""
    parser = subparsers.add_parser(
        "train",
        help="train a reference task with a sparsity method",
        description=(
            "Trains, evaluates and exports one run, and writes its result "
            "row to MODEL_DIR/result.json. Restarting with the same "
            "--model_dir resumes an interrupted run from its last intact "
            "backup; a finished run is not trained again (see --overwrite). "
            "Settings: the task's "
            "defaults, then --config PRESET, then the flags below, then "
            "--set KEY=VALUE. The flags shown are those of --task."
        ),
    )
    parser.add_argument(
        "--task", default=task_name or DEFAULT_TASK,
        help=f"the task: {', '.join(task_lib.names())}",
    )
    parser.add_argument("--model_dir", help="output directory (required)")
    parser.add_argument(
        "--config",
        metavar="PRESET",
        help="a named preset of the task, e.g. 'tiny', 'dense' or "
        "METHOD_PERCENT such as magnitude_90 (see --list_configs)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config value, e.g. --set blocks=1,1,1,1 (repeatable)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the run already in --model_dir (finished or not, whatever its "
        "settings); without it, a finished run with the same settings is left as it "
        "is (exit 0) and one with other settings is an error",
    )
    parser.add_argument("--list_configs", action="store_true", help="list the presets and exit")
    parser.add_argument("--verbose", type=int, default=2, help="Keras verbosity (0, 1, 2; default: 2)")
    parser.set_defaults(func=train_command)
    if task_name is None:
        return
    try:
        task = task_lib.get(task_name)
    except ValueError:
        return  # `train_command` reports the unknown task.
    values = parser.add_argument_group(f"config values of task {task_name!r}")
    for name, spec in config_lib.fields(task.config_class).items():
        if name == "task":
            continue
        kind = spec.metadata["kind"] or type(spec.default)
        extra = {}
        if kind is bool:
            # `--synthetic_data` alone means true; `--export false` works too.
            extra = dict(nargs="?", const="true")
        help_text = spec.metadata["help"]
        choices = config_lib.field_choices(spec)
        if choices is not None:
            help_text += f"; one of: {', '.join(map(str, choices))}"
        if spec.default is not None:  # Else the help says what None means.
            help_text += f" (default: {config_lib.default_text(spec)})"
        values.add_argument(
            f"--{name}",
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=help_text,
            **extra,
        )


def train_command(args):
    """Runs `tf-sparsity train` for parsed `args`; returns the exit code.

    `args.boundary`, when the entry point sets it, gives a Keras callback
    marking where bad input ends (see `tf_sparsity_models.cli.Boundary`).
    """
    task = task_lib.get(args.task)
    if args.list_configs:
        for name in sorted(task.presets):
            print(f"{name}: {task.presets[name]}")
        return 0
    config = config_from_args(task, args)
    if not args.model_dir:
        raise ValueError("--model_dir is required")
    # The runner loads Keras and TensorFlow: only when a run starts, since
    # this parser is built for every command (`report` must start without).
    from tf_sparsity_models.common import runner

    boundary = getattr(args, "boundary", None)
    callbacks = [boundary.callback()] if boundary is not None else []
    with warnings.catch_warnings():
        warnings.simplefilter("always", runner.ScheduleNotFinishedWarning)
        warnings.showwarning = _one_line_warnings(
            warnings.showwarning, runner.ScheduleNotFinishedWarning
        )
        runner.run(
            config, args.model_dir, callbacks=callbacks, verbose=args.verbose,
            overwrite=args.overwrite,
        )
    return 0


def _one_line_warnings(show, category):
    """`warnings.showwarning` printing warnings of `category` as one
    `warning: ...` line (they are about the command's input), others as
    `show` does."""

    def show_warning(message, warning_category, filename, lineno, file=None, line=None):
        if issubclass(warning_category, category):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, warning_category, filename, lineno, file, line)

    return show_warning


def config_from_args(task, args):
    """The resolved config that parsed `args` describe for `task`.

    Raises:
        ValueError: unknown preset or key, or a bad value.
    """
    given = vars(args)
    config_class = task.config_class
    overrides = {
        name: config_lib.parse_value(config_class, name, given[name])
        for name in config_lib.fields(config_class)
        if name in given and name != "task"
    }
    for assignment in args.set:
        key, value = config_lib.parse_assignment(config_class, assignment)
        overrides[key] = value
    return config_lib.make_config(task, args.config, overrides)
