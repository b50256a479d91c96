"""The `tf-sparsity translate` subcommand's flags (the work is in
`translate.py`, imported only when the command runs).

The Transformer task contributes this subcommand through the task registry
(`common/task.py`'s `COMMANDS`).
"""

from tf_sparsity_models.common import arguments


def add_parser(subparsers):
    """Registers `tf-sparsity translate`.

    Args:
        subparsers: the object returned by `parser.add_subparsers()`.

    Returns:
        The new subparser.
    """
    parser = subparsers.add_parser(
        "translate",
        help="translate lines with a trained transformer run or its export",
        description=(
            "Translates INPUT (default: stdin) line by line with the run in "
            "--model_dir (model.keras and vocab.spm) or the SavedModel in "
            "--export, and writes one translation per line to OUTPUT "
            "(default: stdout)."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="a finished `train --task transformer` run")
    source.add_argument("--export", help="an exported SavedModel (e.g. MODEL_DIR/export/1)")
    parser.add_argument("--input", default="-", help="text file, one sentence per line (default: stdin)")
    parser.add_argument("--output", default="-", help="where translations go (default: stdout)")
    parser.add_argument(
        "--beam_size", type=arguments.positive_int, help="beams, 1 for greedy (default: the run's)"
    )
    parser.add_argument("--alpha", type=float, help="length-penalty exponent (default: the run's)")
    parser.add_argument(
        "--batch_size", type=arguments.positive_int, default=64,
        help="sentences per batch (default: 64)",
    )
    parser.set_defaults(func=translate_command)
    return parser


def translate_command(args):
    """Runs `tf-sparsity translate` for parsed `args`; returns the exit code."""
    # TensorFlow loads here, when the command runs: the parser is built for
    # every command, and `report` and `sweep` must start without it.
    from tf_sparsity_models.transformer import translate

    return translate.translate_command(args)
