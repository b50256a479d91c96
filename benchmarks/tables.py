"""Regenerates the benchmark tables of the docs from `benchmarks/results/`.

    python benchmarks/tables.py            # print the markdown
    python benchmarks/tables.py --docs     # rewrite the section of docs/benchmarks.md

The section lies between `<!-- benchmarks:start -->` and
`<!-- benchmarks:end -->` in `docs/benchmarks.md`. The quality frontier is also written as a full
report with plots to `benchmarks/results/frontier/report/`.
"""

import argparse
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def _load(pattern):
    payloads = []
    for path in sorted(glob.glob(os.path.join(RESULTS, pattern))):
        with open(path) as f:
            payload = json.load(f)
        payload["_file"] = os.path.relpath(path, ROOT)
        payloads.append(payload)
    return payloads


def _machine(machine):
    device = machine.get("device_kind") or f"{machine.get('cpu_count')}-core {machine.get('processor')} CPU"
    return f"{device}, Keras {machine['keras']} on {machine['backend']}"


def step_time_table():
    lines = ["| model | method | library | median step | vs its dense (median) | (mean) | (median of round ratios) | where |",
             "|---|---|---|---|---|---|---|---|"]
    for payload in _load("step_time_*.json"):
        args = payload["args"]
        where = _machine(payload["machine"])
        where += f", batch {args['batch_size']}, {'XLA' if args['jit_compile'] else 'no XLA'}"
        if args.get("mixed_precision"):
            where += f", {args['mixed_precision']}"
        if args.get("gradual"):
            where += f", gradual 0→{args['sparsity']:.0%} over {args['steps'] * args['rounds']} steps, update every {args['frequency']}"
        for row in payload["results"]:
            library = row.get("library", "tf_sparsity" if row["method"] != "dense" else "keras 3")
            lines.append(
                f"| {row['model']} | {row['method']} | {library} | {row['median_step_s'] * 1e3:.2f} ms "
                f"| {row['ratio_median']:.3f}x | {row['ratio_mean']:.3f}x "
                f"| {_ratio(row.get('ratio_median_of_rounds'))} | {where} |"
            )
    return "\n".join(lines)


def _ratio(value):
    return "-" if value is None else f"{value:.3f}x"


def mask_update_table():
    lines = ["| weights | tf_sparsity | tfmot | amortized at 1 update / 2000 steps | where |", "|---|---|---|---|---|"]
    for payload in _load("mask_update_*.json"):
        where = _machine(payload["machine"])
        step = payload["args"].get("step_time_s")
        for row in payload["results"]:
            tfmot = f"{row['tfmot_s'] * 1e3:.2f} ms" if row.get("tfmot_s") else "n/a"
            amortized = f"{row['amortized_fraction']:.1e} of a {step * 1e3:.0f} ms step" if row.get("amortized_fraction") else ""
            kernels = row.get("kernels", 1)
            weights = f"{row['size']:,}" if kernels == 1 else f"{kernels} x {row['size']:,} (Adam)"
            lines.append(f"| {weights} | {row['tf_sparsity_s'] * 1e3:.2f} ms | {tfmot} | {amortized} | {where} |")
    return "\n".join(lines)


def export_table():
    lines = ["| model | sparsity | latency vs dense (batch 1) | (batch 128) | SavedModel | gzip dense | gzip sparse |",
             "|---|---|---|---|---|---|---|"]
    for payload in _load("export_*.json"):
        for row in payload["results"]:
            lines.append(
                f"| {row['model']} | {row['sparsity']:.0%} | {row.get('latency_ratio_b1', float('nan')):.3f}x "
                f"| {row.get('latency_ratio_b128', float('nan')):.3f}x | {row['sparse_bytes'] / 1e6:.2f} MB "
                f"| {row['dense_gzip_bytes'] / 1e6:.2f} MB | {row['sparse_gzip_bytes'] / 1e6:.2f} MB |"
            )
    return "\n".join(lines)


def frontier_tables():
    rows_dir = os.path.join(RESULTS, "frontier")
    if not os.path.exists(os.path.join(rows_dir, "rows.jsonl")):
        return "(not run yet)"
    sys.path.insert(0, ROOT)
    from tf_sparsity_models.reporting import load_rows
    from tf_sparsity_models.reporting import write_report

    out = os.path.join(rows_dir, "report")
    write_report(load_rows([os.path.join(rows_dir, "rows.jsonl")]), out)
    with open(os.path.join(out, "report.md")) as f:
        text = f.read()
    # Keep the tables; the plots are linked.
    body = text.split("\n", 1)[1].strip()
    body = re.sub(r"^## ", "#### ", body, flags=re.MULTILINE)
    plots = sorted(glob.glob(os.path.join(out, "*_frontier.png")))
    links = " ".join(
        f"[{os.path.basename(p)}]({os.path.relpath(p, os.path.join(ROOT, 'docs'))})" for p in plots
    )
    return body + ("\n\nPlots: " + links if links else "")


def render():
    return "\n\n".join(
        [
            "#### Step time (training step, median over timed steps; warm-up excluded)",
            step_time_table(),
            "#### Mask update cost",
            mask_update_table(),
            "#### Export",
            export_table(),
            "#### Quality frontier (MNIST subset)",
            frontier_tables(),
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", action="store_true", help="rewrite the section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    text = render()
    if not args.docs:
        print(text)
        return
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        page = f.read()
    if START not in page or END not in page:
        raise SystemExit(f"{path} has no {START} ... {END} section.")
    before, rest = page.split(START, 1)
    _, after = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(before + START + "\n" + text + "\n" + END + after)
    print(f"{os.path.relpath(path, ROOT)} updated")


if __name__ == "__main__":
    main()
