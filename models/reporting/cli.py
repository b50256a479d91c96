"""The `report` and `sweep` subcommands of the `tf-sparsity` command.

The main command registers them on its argparse subparsers:

```python
parser = argparse.ArgumentParser(prog="tf-sparsity")
subparsers = parser.add_subparsers(dest="command", required=True)
reporting_cli.add_report_parser(subparsers)
reporting_cli.add_sweep_parser(subparsers)
args = parser.parse_args(argv)
return args.func(args)
```

Each subcommand's `func` returns an exit code: 0 on success, 1 when some
sweep runs failed, and 2 on bad input, after one `error: ...` line on stderr.
"""

import sys

from tf_sparsity_models.reporting import report as report_lib
from tf_sparsity_models.reporting import rows as rows_lib
from tf_sparsity_models.reporting import sweep as sweep_lib

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
EXIT_BAD_INPUT = 2
# `--print` with no file name prints to stdout.
_STDOUT = "-"


def add_report_parser(subparsers):
    """Registers `tf-sparsity report RESULT_DIRS... --out DIR`.

    Args:
        subparsers: the object returned by `parser.add_subparsers()`.

    Returns:
        The new subparser.
    """
    parser = subparsers.add_parser(
        "report",
        help="tables and sparsity-accuracy plots of training results",
        description=(
            "Aggregates result rows (result.json, *.json, *.jsonl) over seeds "
            "and writes report.md, PNG plots and report.html (the tables and "
            "the plots, for a browser)."
        ),
    )
    parser.add_argument(
        "result_dirs",
        nargs="+",
        metavar="RESULT_DIRS",
        help="result files or directories (searched recursively)",
    )
    parser.add_argument("--out", required=True, help="directory to write into")
    parser.add_argument(
        "--metric",
        default=None,
        help="metric to report (default: each row's main_metric: top1 for "
        "resnet50, bleu_tokenized for transformer, accuracy otherwise)",
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="add published results: the paper's (resnet50, transformer) and the one-shot LLM anchors (oneshot_* tasks)",
    )
    parser.add_argument(
        "--layers",
        default=None,
        metavar="RUN_ID",
        help="also plot the per-layer sparsity of this run",
    )
    parser.add_argument(
        "--x",
        default="auto",
        choices=report_lib.X_AXES,
        help="x axis of the frontier plots: sparsity (linear), remaining-log "
        "(sparsity ticks spaced by the log of the weights remaining, 1 - "
        "sparsity, so 90%%, 99%% and 99.9%% are evenly spaced), or auto "
        "(default): remaining-log when a plotted point reaches 90%% sparsity",
    )
    parser.add_argument(
        "--embed-images",
        action="store_true",
        help="embed the PNGs in report.html (one self-contained file) "
        "instead of linking the files beside it",
    )
    parser.set_defaults(func=report_command)
    return parser


def add_sweep_parser(subparsers):
    """Registers `tf-sparsity sweep SPEC --out DIR [--print [FILE]]`.

    Args:
        subparsers: the object returned by `parser.add_subparsers()`.

    Returns:
        The new subparser.
    """
    parser = subparsers.add_parser(
        "sweep",
        help="run or print a grid of training runs",
        description=(
            "Expands a JSON/YAML grid spec into `tf-sparsity train` runs. "
            "Runs whose OUT/RUN_ID/result.json exists are skipped."
        ),
    )
    parser.add_argument("spec", metavar="SPEC", help="grid spec (.json/.yaml)")
    parser.add_argument("--out", required=True, help="sweep output directory")
    parser.add_argument(
        "--print",
        dest="print_file",
        nargs="?",
        const=_STDOUT,
        default=None,
        metavar="FILE",
        help="print one command per line, to FILE or stdout, instead of "
        "running them (with FILE, write --print=FILE or put it last)",
    )
    parser.set_defaults(func=sweep_command)
    return parser


def report_command(args):
    """Runs `tf-sparsity report`; returns the exit code."""
    try:
        rows = rows_lib.load_rows(args.result_dirs)
        if not rows:
            raise ValueError(
                "no result rows found in " + ", ".join(args.result_dirs)
            )
        written = report_lib.write_report(
            rows,
            args.out,
            metric=args.metric,
            paper=args.paper,
            layers_run=args.layers,
            x=args.x,
            embed_images=args.embed_images,
        )
    except (ValueError, OSError) as error:
        return _fail(error)
    print(f"Read {len(rows)} result rows; wrote:")
    for path in written:
        print(f"  {path}")
    return EXIT_OK


def sweep_command(args):
    """Runs `tf-sparsity sweep`; returns the exit code."""
    printing = args.print_file is not None
    print_file = None if args.print_file in (None, _STDOUT) else args.print_file
    try:
        summary = sweep_lib.run_sweep(
            args.spec,
            args.out,
            mode="print" if printing else "local",
            print_file=print_file,
            log=_log,
        )
    except (ValueError, OSError) as error:
        return _fail(error)
    # stderr, so that `--print` output on stdout stays pure commands.
    _log(str(summary))
    for run_id, reason in summary.failed:
        _log(f"failed: {run_id}: {reason}")
    return EXIT_RUNS_FAILED if summary.failed else EXIT_OK


def _log(line):
    print(line, file=sys.stderr)


def _fail(error):
    print(f"error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
