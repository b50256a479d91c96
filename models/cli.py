"""The `tf-sparsity` console command.

Subcommands: `demo` (LeNet-300-100 on offline MNIST), `train` (the reference
tasks), `oneshot` (one-shot pruning of a pretrained language model), those the tasks add (the Transformer's `translate`), `report` and
`sweep` (result tables, plots and grids). `python -m tf_sparsity_models.cli`
runs it too.

`report` and `sweep` only read and write JSON, text and plots (a sweep runs
its trainings as subprocesses), so they start without Keras and TensorFlow,
which take seconds to load: building the parser imports neither (nor
`tf_sparsity`, which loads Keras); each other command loads them when it
runs.
"""

import argparse
import importlib
import sys

from tf_sparsity_models.common import cli as train_cli
from tf_sparsity_models.common import task as task_lib
from tf_sparsity_models.demo import cli as demo_cli
from tf_sparsity_models.oneshot import cli as oneshot_cli
from tf_sparsity_models.reporting import cli as reporting_cli

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """Reports bad command lines as one `error: ...` line (exit code 2)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def build_parser(argv=None):
    """The `tf-sparsity` argument parser.

    Args:
        argv: the command line, without the program name. For `train`, its
            `--task` is read first: the flags are that task's config fields.

    Returns:
        The parser; each subcommand sets `func(args)`, returning the exit
        code.
    """
    parser = Parser(
        prog="tf-sparsity",
        description="Sparse Keras 3 models: demo, training, reports and sweeps.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    demo_cli.add_parser(subparsers)
    argv = list(argv or [])
    # Only `train` imports its task, so other commands import none.
    task = train_cli.task_from_argv(argv) if argv[:1] == ["train"] else None
    train_cli.add_train_parser(subparsers, task)
    oneshot_cli.add_parser(subparsers)
    for module in task_lib.command_modules():
        importlib.import_module(module).add_parser(subparsers)
    reporting_cli.add_report_parser(subparsers)
    reporting_cli.add_sweep_parser(subparsers)
    return parser


class Boundary:
    """Where bad input ends: once training has started, an error is a bug
    (or a failure of the run) and shows its traceback; before, it is bad
    input, reported as one `error:` line with exit code 2."""

    def __init__(self):
        self.training = False

    def callback(self):
        """A Keras callback marking that training has started."""
        # Only commands that train call this; `report` and `sweep` start
        # without Keras.
        import keras

        boundary = self

        class TrainingStarted(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                boundary.training = True

        return TrainingStarted()


def main(argv=None):
    """Runs `tf-sparsity` with `argv` (default: `sys.argv[1:]`); returns the
    exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.boundary = Boundary()
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        if args.boundary.training:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
