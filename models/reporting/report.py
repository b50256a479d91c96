"""`write_report()`: tables and sparsity-accuracy frontier plots of result rows.

Writes, into one directory:

- `report.md`: per task, a markdown table of methods (rows) by target
  sparsity (columns); each cell is "mean ± std (runs) @ achieved sparsity";
- `TASK_frontier.png`: the task's metric against sparsity, one line per
  method, with error bars for the standard deviation over seeds, in the
  style of the paper's figures (optionally with the paper's own points);
- `TASK_METHOD_layers.png` for one chosen run: its per-layer sparsity;
- for a structured method (rows with a `structure` other than
  "unstructured", e.g. unit pruning with `tfs.shrink`, whose sparsity is
  the shrunk model's parameter sparsity) paired with unstructured runs at
  the same target: a table of the pairs in `report.md`, and
  `TASK_METHOD_frontier.png`, the method against the unstructured one(s).

Plots are drawn on `matplotlib.figure.Figure` objects, which render with
the Agg canvas and never touch pyplot's global state or a display.
"""

import pathlib
import re

from matplotlib.figure import Figure

from tf_sparsity_models.reporting import paper as paper_lib
from tf_sparsity_models.reporting import rows as rows_lib

REPORT_FILENAME = "report.md"
# Known methods first, in the order the paper discusses them.
METHOD_ORDER = (
    "dense",
    "magnitude",
    "random",
    "variational_dropout",
    "l0",
    "lottery",
    "scratch_e",
    "scratch_b",
    "distribution_only",
    "tfmot_magnitude",
    "magnitude_extended",
)
# Stored as fractions in rows, shown in percent like the paper.
PERCENT_METRICS = ("top1", "top5", "accuracy")
METRIC_LABELS = {
    "top1": "Top-1 accuracy (%)",
    "top5": "Top-5 accuracy (%)",
    "accuracy": "Accuracy (%)",
    "bleu": "BLEU (sacreBLEU)",
    "bleu_tokenized": "BLEU (tokenized, as the paper)",
    "perplexity": "Perplexity (lower is better)",
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
# One colour per method, the same in every plot (tab10 colour cycle).
_COLORS = tuple(f"C{index}" for index in range(10))
_PAPER_LABEL = "paper: "


def write_report(rows, out_dir, metric=None, paper=False, layers_run=None):
    """Writes `report.md` and the PNG plots of `rows` into `out_dir`.

    Args:
        rows: result row dicts (e.g. from `rows.load_rows`).
        out_dir: directory to write into (created if missing).
        metric: the metric to report, or None for each task's main metric
            (top1 for resnet50, bleu_tokenized for transformer, accuracy otherwise).
        paper: whether to add the paper's published results (resnet50
            top-1 and transformer tokenized BLEU): a table in `report.md` and hollow
            "paper" markers in the frontier plots.
        layers_run: None, a row dict, or the run id of one row (its
            `run_id`, or the name of the directory of its `result.json`):
            also plot that run's per-layer sparsity.

    Returns:
        The list of paths written, `report.md` first.

    Raises:
        ValueError: on no rows, an invalid row, an unknown metric, or a
            `layers_run` that matches no row or has no per-layer data.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no result rows found")
    for index, row in enumerate(rows):
        where = row.get(rows_lib.SOURCE_KEY, f"rows[{index}]")
        rows_lib.validate_row(row, where=where)
    cells_by_task = {}
    for cell in rows_lib.aggregate(rows, metric):
        cells_by_task.setdefault(cell.task, []).append(cell)
    # Pick the run before writing anything, so a bad id leaves no partial
    # report behind.
    layers_row = find_run(rows, layers_run) if layers_run is not None else None

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / REPORT_FILENAME
    left_out = sorted({row["task"] for row in rows} - set(cells_by_task))
    text = render_markdown(
        cells_by_task, len(rows), paper=paper, left_out=(metric, left_out)
    )
    report_path.write_text(text, encoding="utf-8")
    written = [report_path]
    for task, cells in cells_by_task.items():
        path = out_dir / f"{_safe_name(task)}_frontier.png"
        plot_frontier(task, cells, path, paper=paper)
        written.append(path)
        for method, partners in structured_methods(cells).items():
            path = out_dir / f"{_safe_name(task)}_{_safe_name(method)}_frontier.png"
            shown = {"dense", method, *partners}
            plot_frontier(task, [c for c in cells if c.method in shown], path)
            written.append(path)
    if layers_row is not None:
        name = f"{_safe_name(layers_row['task'])}_"
        name += f"{_safe_name(layers_row['method'])}_layers.png"
        plot_layers(layers_row, out_dir / name)
        written.append(out_dir / name)
    return [str(path) for path in written]


def render_markdown(cells_by_task, num_rows, paper=False, left_out=None):
    """Renders the markdown report.

    Args:
        cells_by_task: task -> list of `rows.Aggregate`.
        num_rows: how many result rows the report is made of.
        paper: whether to add the paper's table for the reference tasks.
        left_out: optional (metric, tasks): tasks left out for lack of
            the metric asked for.

    Returns:
        The markdown text.
    """
    lines = [
        "# Sparsity report",
        "",
        f"{num_rows} result rows. Cells: mean ± std (runs) of the metric over "
        "seeds, @ the mean achieved global sparsity. Columns are target "
        "sparsities.",
    ]
    if left_out and left_out[1]:
        metric, tasks = left_out
        lines += ["", f"No '{metric}' in the rows of: {', '.join(tasks)}."]
    for task, cells in cells_by_task.items():
        metric = cells[0].metric
        targets = sorted({cell.target_sparsity for cell in cells})
        lines += ["", f"## {task}: {metric_label(metric)}", ""]
        lines.append(_table_row(["method"] + [_percent(t) for t in targets]))
        lines.append(_table_row(["---"] * (len(targets) + 1)))
        by_method = {}
        for cell in cells:
            by_method.setdefault(cell.method, {})[cell.target_sparsity] = cell
        for method in sort_methods(by_method):
            row = [method] + [
                _format_cell(by_method[method].get(target), metric)
                for target in targets
            ]
            lines.append(_table_row(row))
        for method, partners in structured_methods(cells).items():
            lines += [""] + _structure_table(cells, method, partners)
        if paper and paper_lib.has_published(task, metric):
            lines += [""] + _published_table(task, metric)
        if paper and task.startswith(paper_lib.ONESHOT_TASK_PREFIX):
            lines += [""] + paper_lib.oneshot_anchor_table()
    return "\n".join(lines) + "\n"


def plot_frontier(task, cells, path, paper=False):
    """Plots the metric against sparsity for each method of one task.

    Each method is a line through its cells at their mean achieved global
    sparsity, with error bars of one standard deviation over seeds. Dense
    runs are a dashed horizontal line with a ±std band.

    Args:
        task: the task name (the title).
        cells: the task's `rows.Aggregate`s.
        path: the PNG file to write.
        paper: whether to overlay the paper's published points.
    """
    metric = cells[0].metric
    scale = display_scale(metric)
    figure = Figure(figsize=(7.0, 4.8))
    axes = figure.add_subplot()
    by_method = {}
    for cell in cells:
        if cell.mean is not None:
            by_method.setdefault(cell.method, []).append(cell)
    methods = sort_methods(by_method)
    styles = _method_styles(methods)
    for method in methods:
        color, marker = styles[method]
        points = sorted(by_method[method], key=lambda c: c.global_sparsity)
        if method == "dense":
            mean = points[0].mean * scale
            std = points[0].std * scale
            axes.axhline(mean, color=color, linestyle="--", label="dense")
            if std:
                axes.axhspan(mean - std, mean + std, color=color, alpha=0.15)
            continue
        axes.errorbar(
            [cell.global_sparsity for cell in points],
            [cell.mean * scale for cell in points],
            yerr=[cell.std * scale for cell in points],
            color=color,
            marker=marker,
            linestyle="-",
            capsize=3,
            label=method,
        )
    if paper and paper_lib.has_published(task, metric):
        _plot_published(axes, task, scale, methods)
    axes.set_xlabel("Sparsity")
    axes.set_ylabel(metric_label(metric))
    axes.set_title(task)
    axes.grid(True, alpha=0.3)
    # Measured methods first, then the paper's; outside the axes, so the
    # legend never hides a point.
    handles, labels = axes.get_legend_handles_labels()
    order = sorted(
        range(len(labels)), key=lambda i: labels[i].startswith(_PAPER_LABEL)
    )
    axes.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize="small",
    )
    figure.savefig(path, dpi=120, bbox_inches="tight")


def plot_layers(row, path):
    """Plots the per-layer sparsity of one run as horizontal bars.

    Args:
        row: a result row with a `layers` list of per-layer dicts
            (`path`, `kernel`, and `sparsity` or `size` and `nonzero`).
        path: the PNG file to write.

    Raises:
        ValueError: when the row has no usable per-layer data.
    """
    where = row.get("run_id") or row.get(rows_lib.SOURCE_KEY, "the run")
    layers = row.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{where}: the row has no per-layer 'layers' list")
    names, sparsities = [], []
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict) or "path" not in layer:
            raise ValueError(f"{where}: layers[{index}] has no 'path'")
        name = layer["path"]
        if layer.get("kernel") not in (None, "kernel"):
            name += f" ({layer['kernel']})"
        names.append(name)
        sparsities.append(_layer_sparsity(layer, f"{where}: layers[{index}]"))
    figure = Figure(figsize=(7.0, 1.5 + 0.28 * len(layers)))
    axes = figure.add_subplot()
    positions = range(len(layers))
    axes.barh(positions, sparsities, color="C0")
    axes.set_yticks(positions, names, fontsize="small")
    axes.invert_yaxis()  # First layer on top, as in a model summary.
    axes.axvline(
        row["global_sparsity"],
        color="C3",
        linestyle="--",
        label=f"global {_percent(row['global_sparsity'])}",
    )
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("Sparsity")
    target = row["target_sparsity"]
    target = "no target" if target is None else f"target {_percent(target)}"
    axes.set_title(f"{row['task']} / {row['method']}, {target}: per-layer sparsity")
    axes.legend(loc="lower right", fontsize="small")
    figure.savefig(path, dpi=120, bbox_inches="tight")


def find_run(rows, run):
    """Finds the row of one run.

    Args:
        rows: result rows.
        run: a row dict (checked, then returned), or a run id: the row's
            `run_id`, or the name of the directory holding its
            `result.json`.

    Returns:
        The row.

    Raises:
        ValueError: when no row, or more than one row, matches.
    """
    if isinstance(run, dict):
        rows_lib.validate_row(run, where="layers_run")
        return run
    matches = [row for row in rows if run in _run_ids(row)]
    if not matches:
        raise ValueError(f"no result row has run id '{run}'")
    if len(matches) > 1:
        sources = ", ".join(
            str(row.get(rows_lib.SOURCE_KEY, "?")) for row in matches
        )
        raise ValueError(
            f"run id '{run}' matches {len(matches)} rows ({sources}); "
            "report a single result directory"
        )
    return matches[0]


def structured_methods(cells):
    """The structured methods among one task's cells, each with the
    unstructured methods that have runs at its targets.

    A cell is structured when its rows carry a `structure` other than
    "unstructured" (e.g. "units"), unstructured when they carry
    `structure: "unstructured"` (runs paired with a structured one at the
    same parameter count).

    Returns:
        `{method: sorted partner methods}`, in `sort_methods` order.
    """
    kinds = {}
    for cell in cells:
        structures = {row.get("structure") for row in cell.rows} - {None}
        if structures:
            kinds.setdefault(cell.method, set()).update(structures)
    structured = [m for m, kinds_ in kinds.items() if kinds_ - {"unstructured"}]
    result = {}
    for method in sort_methods(structured):
        targets = {c.target_sparsity for c in cells if c.method == method}
        result[method] = sort_methods(
            {
                c.method
                for c in cells
                if c.target_sparsity in targets
                and "unstructured" in kinds.get(c.method, ())
            }
        )
    return result


def _structure_table(cells, method, partners):
    """A markdown table: `method` against its unstructured partners at each
    of its targets (equal parameter counts)."""
    metric = cells[0].metric
    scale = display_scale(metric)
    by_key = {(c.method, c.target_sparsity): c for c in cells}
    own = sorted((c for c in cells if c.method == method), key=lambda c: c.target_sparsity)
    structures = sorted({str(row.get("structure")) for c in own for row in c.rows})
    lines = [
        f"{method} ({', '.join(structures)} structure) against {', '.join(partners) or 'no'} "
        "unstructured runs at the same parameter count (the shrunk model's "
        f"parameter sparsity), {metric_label(metric)}:",
        "",
        _table_row(
            ["units pruned", "kernel weights kept", "sparsity", method]
            + partners
            + [f"{method} - {p}" for p in partners]
        ),
        _table_row(["---"] * (4 + 2 * len(partners))),
    ]
    for cell in own:
        fractions = sorted({row.get("unit_fraction") for row in cell.rows} - {None})
        kept = sorted({row.get("kernel_weights") for row in cell.rows} - {None})
        dense = sorted({row.get("kernel_weights_dense") for row in cell.rows} - {None})
        row = [
            ", ".join(_percent(f) for f in fractions),
            ", ".join(f"{k:,}" for k in kept) + (f" of {dense[0]:,}" if len(dense) == 1 else ""),
            _percent(cell.target_sparsity, digits=1),
            _format_cell(cell, metric).split(" @ ")[0],
        ]
        others = [by_key.get((p, cell.target_sparsity)) for p in partners]
        row += [_format_cell(o, metric).split(" @ ")[0] for o in others]
        for other in others:
            if other is None or other.mean is None or cell.mean is None:
                row.append("")
            else:
                row.append(f"{(cell.mean - other.mean) * scale:+.2f}")
        lines.append(_table_row(row))
    return lines


def sort_methods(methods):
    """Sorts method names: known methods in `METHOD_ORDER`, then the rest."""
    known = [method for method in METHOD_ORDER if method in methods]
    return known + sorted(set(methods) - set(METHOD_ORDER))


def display_scale(metric):
    """Factor from row units to displayed units (percent for accuracies)."""
    return 100.0 if metric in PERCENT_METRICS else 1.0


def metric_label(metric):
    """Human-readable name of a metric, with its displayed unit."""
    return METRIC_LABELS.get(metric, metric)


def _method_styles(methods):
    """(colour, marker) per method: stable across plots for known methods;
    the others take, in order, a colour no method of the plot has while one
    is left, and always a (colour, marker) pair no other method has."""
    styles = {}
    for method in methods:
        if method in METHOD_ORDER:
            index = METHOD_ORDER.index(method)
            styles[method] = (_COLORS[index % len(_COLORS)], _MARKERS[index % len(_MARKERS)])
    # Every (colour, marker) pair, the colours cycling fastest.
    pairs = [
        (_COLORS[k % len(_COLORS)], _MARKERS[(k + k // len(_COLORS)) % len(_MARKERS)])
        for k in range(len(_COLORS) * len(_MARKERS))
    ]
    for method in methods:
        if method in styles:
            continue
        taken = set(styles.values())
        colors = {color for color, _ in taken}
        free = [p for p in pairs if p not in taken]
        fresh = [p for p in free if p[0] not in colors]
        styles[method] = (fresh or free or pairs)[0]
    return styles


def _plot_published(axes, task, scale, methods):
    published = {**paper_lib.published_points(task), **paper_lib.follow_up_points(task)}
    styles = _method_styles(sort_methods(set(published) | set(methods)))
    for method in sort_methods(published):
        color, marker = styles[method]
        points = published[method]
        axes.plot(
            [sparsity for sparsity, _ in points],
            [value * scale for _, value in points],
            color=color,
            marker=marker,
            markerfacecolor="none",
            linestyle=":",
            linewidth=1.0,
            label=f"{_PAPER_LABEL}{method}",
        )
    mean, _, _ = paper_lib.published_dense(task)
    axes.axhline(
        mean * scale,
        color="gray",
        linestyle=":",
        label=f"{_PAPER_LABEL}dense",
    )


def _published_table(task, metric):
    scale = display_scale(metric)
    mean, std, runs = paper_lib.published_dense(task)
    lines = [
        f"Published ({paper_lib.CITATION}, arXiv:{paper_lib.ARXIV_ID}; best "
        f"run per technique and sparsity), {metric_label(metric)}:",
        "",
    ] + _points_table(
        paper_lib.published_points(task), scale, f"{mean * scale:.2f} ± {std * scale:.2f} ({runs})"
    )
    for method, reason in paper_lib.NOT_PUBLISHED.get(task, {}).items():
        lines += ["", f"No published {method} result: {reason}."]
    for follow_up in paper_lib.FOLLOW_UPS.get(task, ()):
        dense = follow_up.results.dense_runs[0] / follow_up.results.scale
        lines += [
            "",
            f"Later work on this task ({follow_up.citation}, arXiv:"
            f"{follow_up.arxiv_id}; {follow_up.source}), {metric_label(metric)}:",
            "",
        ] + _points_table(paper_lib.in_row_units(follow_up.results), scale, f"{dense * scale:.2f}")
    return lines


def _points_table(points, scale, dense):
    """A markdown table of published (sparsity, value) points per method,
    after a dense row."""
    sparsities = sorted({s for pts in points.values() for s, _ in pts})
    lines = [
        _table_row(["method"] + [_percent(s) for s in sparsities]),
        _table_row(["---"] * (len(sparsities) + 1)),
        _table_row(["dense", dense] + [""] * (len(sparsities) - 1)),
    ]
    for method in sort_methods(points):
        values = dict(points[method])
        lines.append(
            _table_row([method] + [f"{values[s] * scale:.2f}" if s in values else "" for s in sparsities])
        )
    return lines


def _format_cell(cell, metric):
    if cell is None:
        return ""
    achieved = f"@ {_percent(cell.global_sparsity, digits=1)}"
    if cell.mean is None:
        return f"n/a (0) {achieved}"
    scale = display_scale(metric)
    return (
        f"{cell.mean * scale:.2f} ± {cell.std * scale:.2f} ({cell.count}) "
        f"{achieved}"
    )


def _percent(fraction, digits=None):
    if digits is None:
        return f"{fraction * 100:.4g}%"
    return f"{fraction * 100:.{digits}f}%"


def _table_row(cells):
    return "| " + " | ".join(cells) + " |"


def _layer_sparsity(layer, where):
    value = layer.get("sparsity")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    size, nonzero = layer.get("size"), layer.get("nonzero")
    if isinstance(size, int) and isinstance(nonzero, int) and size > 0:
        return 1.0 - nonzero / size
    raise ValueError(f"{where}: needs 'sparsity', or 'size' and 'nonzero'")


def _run_ids(row):
    ids = set()
    if row.get("run_id"):
        ids.add(str(row["run_id"]))
    source = row.get(rows_lib.SOURCE_KEY)
    if source and pathlib.Path(source).name == rows_lib.RESULT_FILENAME:
        ids.add(pathlib.Path(source).parent.name)
    return ids


def _safe_name(text):
    # Task and method names go into file names.
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)) or "_"
