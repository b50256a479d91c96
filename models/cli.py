"""`tf-sparsity train`: the reference tasks from one command.

```
tf-sparsity train --task resnet50 --method magnitude --sparsity 0.9 \\
    --model_dir runs/rn50_mp90 --data_dir ~/tensorflow_datasets
```

The run's settings are a `TrainConfig` (models/resnet50/configs.py): the
paper's defaults, then `--config PRESET`, then one flag per config field
(`--steps 1000`, `--batch_size 256`, ...), then `--set key=value` (repeated),
later ones winning. Bad values raise `ValueError`, which the `tf-sparsity`
entry point prints as one `error: ...` line (exit code 2).
"""

import argparse

from tf_sparsity_models.resnet50 import configs

#: Task name -> module with `run(config, model_dir, verbose=...)`.
TASK_MODULES = {"resnet50": "tf_sparsity_models.resnet50.train"}


def add_train_parser(subparsers):
    """Registers the `train` subcommand on an argparse `subparsers`."""
    parser = subparsers.add_parser(
        "train",
        help="train a reference task (ResNet-50) with a sparsity method",
        description=(
            "Trains, evaluates and exports one run, and writes its result "
            "row to MODEL_DIR/result.json. Restarting with the same "
            "--model_dir resumes an interrupted run. Settings: the paper's "
            "defaults, then --config PRESET, then the flags below, then "
            "--set KEY=VALUE."
        ),
    )
    parser.add_argument("--model_dir", help="output directory (required)")
    parser.add_argument(
        "--config",
        metavar="PRESET",
        help="a named preset: 'tiny', 'dense', or METHOD_PERCENT such as "
        "magnitude_90 (see --list_configs)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config value, e.g. --set blocks=1,1,1,1 (repeatable)",
    )
    parser.add_argument(
        "--list_configs", action="store_true", help="list the presets and exit"
    )
    parser.add_argument(
        "--verbose", type=int, default=2, help="Keras verbosity (0, 1, 2)"
    )
    values = parser.add_argument_group(
        "config values (default: the paper's ResNet-50 recipe)"
    )
    for name, field in configs.FIELDS.items():
        kind = field.metadata["kind"] or type(field.default)
        extra = {}
        if kind is bool:
            # `--synthetic_data` alone means true; `--export false` works too.
            extra = dict(nargs="?", const="true")
        help_text = field.metadata["help"]
        if field.default is not None:  # Else the help says what None means.
            help_text += f" (default: {_default_text(field)})"
        values.add_argument(
            f"--{name}",
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=help_text,
            **extra,
        )
    parser.set_defaults(func=train_command)


def train_command(args):
    """Runs `tf-sparsity train` for parsed `args`; returns the exit code."""
    if args.list_configs:
        for name in sorted(configs.PRESETS):
            print(f"{name}: {configs.PRESETS[name]}")
        return 0
    config = config_from_args(args)
    if not args.model_dir:
        raise ValueError("--model_dir is required")
    import importlib

    train = importlib.import_module(TASK_MODULES[config.task])
    train.run(config, args.model_dir, verbose=args.verbose)
    return 0


def config_from_args(args):
    """The resolved `TrainConfig` that parsed `args` describe.

    Raises:
        ValueError: unknown preset or key, or a bad value.
    """
    given = vars(args)
    overrides = {
        name: configs.parse_value(name, given[name])
        for name in configs.FIELDS
        if name in given
    }
    for assignment in args.set:
        key, value = configs.parse_assignment(assignment)
        overrides[key] = value
    return configs.make_config(args.config, overrides)


def _default_text(field):
    if isinstance(field.default, tuple):
        return ",".join(str(part) for part in field.default)
    return str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
