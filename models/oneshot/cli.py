"""The `tf-sparsity oneshot` subcommand's flags (the work is in `run.py`,
imported only when the command runs)."""

import pathlib

from tf_sparsity_models.common import arguments
from tf_sparsity_models.oneshot import text as text_lib

#: The one-shot methods (`tfs.oneshot.REGISTRY`), spelled here so that
#: building the parser imports no Keras.
METHODS = ("magnitude", "wanda", "sparsegpt")


def add_parser(subparsers):
    """Registers `tf-sparsity oneshot`.

    Args:
        subparsers: the object returned by `parser.add_subparsers()`.

    Returns:
        The new subparser.
    """
    parser = subparsers.add_parser(
        "oneshot",
        help="prune a pretrained language model in one shot and measure its perplexity",
        description=(
            "Loads a keras-hub causal LM preset (or a saved .keras model), "
            "prunes it with METHOD from calibration text, measures "
            "perplexity on evaluation text (dense and pruned), and writes a "
            "result row to OUT/result.json for `tf-sparsity report`."
        ),
    )
    parser.add_argument("method", choices=METHODS, help="one-shot method: " + ", ".join(METHODS))
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", help="a keras-hub CausalLM preset, e.g. gpt2_base_en, opt_125m_en, gemma3_270m")
    model.add_argument("--model", help="a saved .keras causal LM (models without a tokenizer read bytes)")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument(
        "--dataset", choices=("wikitext2", "c4"),
        help="calibrate on its training text, evaluate on its test text (needs `datasets` and a network)",
    )
    text.add_argument(
        "--text_file",
        help="local UTF-8 text: calibration windows from its first 80%%, perplexity on the last 20%%",
    )
    parser.add_argument(
        "--sparsity", type=arguments.fraction, default=0.5,
        help="fraction of each pruned layer's weights removed (default: 0.5)",
    )
    parser.add_argument(
        "--structure", type=arguments.structure, default="unstructured",
        help="unstructured, N:M (e.g. 2:4, 4:8; sets the sparsity to 1 - N/M) or a block RxC (default: unstructured)",
    )
    parser.add_argument(
        "--num_samples", type=arguments.positive_int, default=128,
        help="calibration windows (default: 128, as in the papers)",
    )
    parser.add_argument(
        "--sequence_length", type=arguments.positive_int,
        help="tokens per window (default: the model's context length, at most 2048)",
    )
    parser.add_argument("--blocksize", type=arguments.positive_int, default=128, help="SparseGPT's lazy block (default: 128)")
    parser.add_argument(
        "--percdamp", type=arguments.positive_float, default=0.01,
        help="SparseGPT's dampening, a fraction of H's mean diagonal (default: 0.01)",
    )
    parser.add_argument("--batch_size", type=arguments.positive_int, default=8, help="windows per forward pass (default: 8)")
    parser.add_argument(
        "--max_eval_windows", type=arguments.positive_int,
        help="evaluate on at most this many windows (default: all)",
    )
    parser.add_argument("--skip_dense", action="store_true", help="do not measure the dense model's perplexity")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration windows (default: 0)")
    parser.add_argument("--out", default="oneshot_output", help="output directory (default: oneshot_output)")
    parser.add_argument("--save", action="store_true", help="also save the pruned model as OUT/model.keras")
    parser.set_defaults(func=oneshot_command)
    return parser


def oneshot_command(args):
    """Runs `tf-sparsity oneshot` for parsed `args`; returns the exit code."""
    text = check_input(args)
    # Keras loads here, after the input is checked: a mistyped path is
    # reported at once, and `report` and `sweep` start without it.
    from tf_sparsity_models.oneshot import run

    return run.oneshot_command(args, text)


def check_input(args):
    """Checks the files `args` name, before any model loads.

    Returns:
        The text of `--text_file` (None with `--dataset`).

    Raises:
        ValueError: naming the flag and the file at fault.
    """
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory.")
    if args.model and not pathlib.Path(args.model).is_file():
        raise ValueError(f"--model {args.model}: no such file.")
    return text_lib.read_text_file(args.text_file) if args.text_file else None
