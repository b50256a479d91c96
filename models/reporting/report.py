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
  `TASK_METHOD_frontier.png`, the method against the unstructured one(s);
- `report.html`: the same tables as HTML, with each task's plots under its
  heading (linked relatively, or embedded), for browsing a run directory.

Every series has its own look, the same in every plot of a report: a
method belongs to a `FAMILIES` entry (pruning, regularized, dynamic,
learned-mask variants, units, other), which fixes its line style and its
palette (a hue range); within the family the method's slot fixes its
(colour, marker) pair. The paper's published points are drawn in their
method's colour and marker, hollow, on thin dotted lines.

The x axis is the sparsity, either linear or, by default where the data
reach 90%, spaced by the log of the fraction of weights remaining (`X_AXES`),
where 90%, 99% and 99.9% are equally far apart and the high sparsities,
where methods differ, get most of the width.

Plots are drawn on `matplotlib.figure.Figure` objects, which render with
the Agg canvas and never touch pyplot's global state or a display.
"""

import base64
import dataclasses
import html
import itertools
import pathlib
import re

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
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
_PAPER_LABEL = "paper: "
HTML_FILENAME = "report.html"

#: The frontier plots' x axis: "sparsity" (linear); "remaining-log" (ticks
#: in sparsity, spaced by the log of the fraction of weights remaining,
#: 1 - sparsity, as in the sparse-training literature); "auto":
#: remaining-log where the plotted points reach `AUTO_LOG_FROM`, else linear.
X_AXES = ("auto", "sparsity", "remaining-log")
AUTO_LOG_FROM = 0.9
#: Tick positions of the remaining-log axis (those in view are drawn): the
#: paper's targets, then the next "nines".
LOG_TICKS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
# The remaining-log axis stops at 1e-6 of the weights remaining.
_MIN_REMAINING = 1e-6


@dataclasses.dataclass(frozen=True)
class Family:
    """How the methods of one family look in every plot.

    Attributes:
        label: what the family is.
        linestyle: the line style of all its series.
        colors: its palette, one hue range (a family's colours are no other
            family's).
        markers: its markers, more than colours and a prime count, so that
            slot k's pair `(colors[k % C], markers[k % M])` is distinct for
            the first C * M slots; later slots take shades of the palette.
        methods: its known methods, in slot order: a known method has the
            same slot, hence the same look, whatever else is plotted.
            Methods not listed take the next free slots (in name order).
    """

    label: str
    linestyle: object
    colors: tuple
    markers: tuple
    methods: tuple = ()


#: Families, in legend order. Methods named after a known method
#: ("rigl_5x", "magnitude_2:4") join that method's family; structured
#: methods (rows with a `structure` other than "unstructured") join "units";
#: the rest "other".
FAMILIES = {
    "dense": Family("dense baseline", "--", ("#262626",), ("",), ("dense",)),
    "pruning": Family(
        "pruning (gradual magnitude, random, one-shot)",
        "-",
        ("#1f77b4", "#17becf", "#0b2a6f", "#7b9cc4", "#3d5afe"),
        ("o", "s", "^", "D", "v", "P", "X"),
        (
            "magnitude",
            "random",
            "tfmot_magnitude",
            "magnitude_erk",
            "magnitude_regrowth",
            "magnitude_extended",
            "sparsegpt",
            "wanda",
        ),
    ),
    "regularized": Family(
        "regularized (sparsity learned through a penalty)",
        (0, (5, 2)),
        ("#d62728", "#ff7f0e", "#8c1010", "#f08080"),
        ("D", "o", "v", "s", "^", "P", "X"),
        ("variational_dropout", "l0"),
    ),
    "dynamic": Family(
        "dynamic sparse training (masks from the start)",
        (0, (6, 2, 1.5, 2)),
        ("#2ca02c", "#0b5d1e", "#9acd32", "#6b8e23"),
        ("^", "s", "o", "v", "D", "X", "P"),
        ("rigl", "set", "static_sparse", "rigl_5x", "rigl_uniform"),
    ),
    "learned_mask": Family(
        "learned-mask variants (retraining a finished run's masks)",
        (0, (3, 1.5, 1, 1.5, 1, 1.5)),
        ("#9467bd", "#e377c2", "#4b1d7a", "#c51b7d"),
        ("v", "^", "s", "o", "D", "P", "X"),
        ("lottery", "scratch_e", "scratch_b", "distribution_only", "fixed_mask"),
    ),
    "units": Family(
        "structured (whole units, shrunk)",
        (0, (9, 3)),
        ("#8c564b", "#c49a00", "#4e342e"),
        ("X", "*", "p", "h", "8", "H", "d"),
        ("magnitude_units",),
    ),
    "other": Family(
        "other methods",
        (0, (1, 1)),
        ("#7f7f7f", "#bcbd22"),
        ("o", "s", "^", "D", "v", "P", "X"),
    ),
}


@dataclasses.dataclass(frozen=True)
class Style:
    """One series' look.

    Attributes:
        color: a matplotlib colour.
        marker: a matplotlib marker ("" for the dense line).
        linestyle: its family's line style.
        family: its `FAMILIES` key.
        slot: its index among its family's series.
    """

    color: object
    marker: str
    linestyle: object
    family: str
    slot: int

    @property
    def pair(self):
        """(colour, marker): distinct for every series of a report."""
        return (self.color, self.marker)


def write_report(
    rows, out_dir, metric=None, paper=False, layers_run=None, x="auto", embed_images=False
):
    """Writes `report.md`, `report.html` and the PNG plots of `rows` into
    `out_dir`.

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
        x: the frontier plots' x axis, one of `X_AXES`.
        embed_images: whether `report.html` embeds the PNGs (one file to
            pass around) instead of linking them relatively.

    Returns:
        The list of paths written: `report.md`, `report.html`, then the PNGs.

    Raises:
        ValueError: on no rows, an invalid row, an unknown metric or x
            axis, or a `layers_run` that matches no row or has no per-layer
            data.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no result rows found")
    if x not in X_AXES:
        raise ValueError(f"unknown x axis '{x}'; expected one of: {', '.join(X_AXES)}")
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
    # One look per method for the whole report: the same in every plot.
    styles = series_styles(
        _report_methods(cells_by_task, paper),
        structured={m for cells in cells_by_task.values() for m in structured_methods(cells)},
    )
    figures = []  # (task, path)
    for task, cells in cells_by_task.items():
        path = out_dir / f"{_safe_name(task)}_frontier.png"
        plot_frontier(task, cells, path, paper=paper, x=x, styles=styles)
        figures.append((task, path))
        for method, partners in structured_methods(cells).items():
            path = out_dir / f"{_safe_name(task)}_{_safe_name(method)}_frontier.png"
            plot_frontier(
                task, cells, path, only={"dense", method, *partners}, x=x, styles=styles
            )
            figures.append((task, path))
    if layers_row is not None:
        name = f"{_safe_name(layers_row['task'])}_"
        name += f"{_safe_name(layers_row['method'])}_layers.png"
        plot_layers(layers_row, out_dir / name)
        figures.append((layers_row["task"], out_dir / name))
    headings = {
        task: _task_heading(task, cells[0].metric) for task, cells in cells_by_task.items()
    }
    figures_by_heading = {}
    for task, path in figures:
        figures_by_heading.setdefault(headings.get(task), []).append(path)
    html_path = out_dir / HTML_FILENAME
    html_path.write_text(
        render_html(text, figures_by_heading, embed=embed_images), encoding="utf-8"
    )
    return [str(path) for path in [report_path, html_path] + [p for _, p in figures]]


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
        lines += ["", f"## {_task_heading(task, metric)}", ""]
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


def render_html(markdown_text, figures_by_heading=None, embed=False):
    """Renders the markdown report as one HTML page, with the plots.

    Only the markdown `render_markdown` writes is understood: headings,
    paragraphs, pipe tables and `code` spans.

    Args:
        markdown_text: the text of `report.md`.
        figures_by_heading: `{heading text: [PNG paths]}`: each list goes
            under its "## " heading; a None key, or one that is no heading,
            goes at the end, under "Other figures".
        embed: whether to embed the PNGs (base64 `data:` URIs) instead of
            linking them by file name, relative to the page (they are written
            beside it).

    Returns:
        The HTML text.
    """
    figures_by_heading = dict(figures_by_heading or {})
    title = "Sparsity report"
    body, contents = [], []
    lines = markdown_text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("|"):
            table = []
            while index < len(lines) and lines[index].startswith("|"):
                table.append(lines[index])
                index += 1
            body.append(_html_table(table))
            continue
        index += 1
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            level, text = len(heading.group(1)), heading.group(2).strip()
            if level == 1:
                title = text
            anchor = _safe_name(text).strip("_.-").lower()
            body.append(f'<h{level} id="{anchor}">{_inline_html(text)}</h{level}>')
            if level == 2:
                contents.append(f'<li><a href="#{anchor}">{_inline_html(text)}</a></li>')
                body += [_html_figure(path, embed) for path in figures_by_heading.pop(text, ())]
        elif line.strip():
            paragraph = [line.strip()]
            while index < len(lines) and lines[index].strip() and not (
                lines[index].startswith(("|", "#"))
            ):
                paragraph.append(lines[index].strip())
                index += 1
            body.append(f"<p>{_inline_html(' '.join(paragraph))}</p>")
    others = [path for paths in figures_by_heading.values() for path in paths]
    if others:
        body.append('<h2 id="other-figures">Other figures</h2>')
        contents.append('<li><a href="#other-figures">Other figures</a></li>')
        body += [_html_figure(path, embed) for path in others]
    if contents:
        # After the title and the first paragraph.
        at = next((i + 1 for i, part in enumerate(body) if part.startswith("<p>")), 1)
        body.insert(at, "<nav><ul>" + "".join(contents) + "</ul></nav>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_HTML_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


_HTML_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;"
    "max-width:80em;padding:0 1em;color:#222;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em;display:block;overflow-x:auto}"
    "th,td{border:1px solid #ccc;padding:0.3em 0.6em;white-space:nowrap}"
    "th{background:#f2f2f2}tbody tr:nth-child(even){background:#fafafa}"
    "figure{margin:1em 0}figure img{max-width:100%;height:auto}"
    "figcaption{font-size:0.85em;color:#555}code{background:#f2f2f2;padding:0 0.2em}"
)


def _html_table(lines):
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, body = rows[0], rows[1:]
    if body and all(re.fullmatch(r":?-+:?", cell) for cell in body[0]):
        body = body[1:]  # The |---| line.
    parts = ["<table>", "<thead><tr>"]
    parts += [f"<th>{_inline_html(cell)}</th>" for cell in header]
    parts.append("</tr></thead>")
    parts.append("<tbody>")
    for row in body:
        parts.append("<tr>" + "".join(f"<td>{_inline_html(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _html_figure(path, embed):
    path = pathlib.Path(path)
    if embed:
        source = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    else:
        source = html.escape(path.name, quote=True)
    name = html.escape(path.name)
    return (
        f'<figure><img src="{source}" alt="{name}">'
        f'<figcaption><a href="{html.escape(path.name, quote=True)}">{name}</a></figcaption></figure>'
    )


def _inline_html(text):
    """Escapes text; `code` spans become <code>."""
    parts = text.split("`")
    return "".join(
        f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part)
        for i, part in enumerate(parts)
    )


def _task_heading(task, metric):
    """The "## " heading of a task's section in `report.md`."""
    return f"{task}: {metric_label(metric)}"


def plot_frontier(task, cells, path, paper=False, only=None, x="auto", styles=None):
    """Plots the metric against sparsity for each method of one task.

    Each method is a line through its cells at their mean achieved global
    sparsity, with error bars of one standard deviation over seeds. Dense
    runs are a dashed horizontal line with a ±std band.

    Args:
        task: the task name (the title).
        cells: the task's `rows.Aggregate`s.
        path: the PNG file to write.
        paper: whether to overlay the paper's published points.
        only: None, or the methods to draw (each in the colour and marker
            it has in the plot of all the cells).
        x: the x axis, one of `X_AXES`.
        styles: method -> `Style` (e.g. one for a whole report), or None
            for `series_styles` of the plotted methods.
    """
    metric = cells[0].metric
    scale = display_scale(metric)
    figure = Figure(figsize=(7.5, 4.8))
    axes = figure.add_subplot()
    by_method = {}
    for cell in cells:
        if cell.mean is not None:
            by_method.setdefault(cell.method, []).append(cell)
    published = {}
    if paper and paper_lib.has_published(task, metric):
        published = {**paper_lib.published_points(task), **paper_lib.follow_up_points(task)}
    if styles is None:
        styles = series_styles(
            set(by_method) | set(published), structured=set(structured_methods(cells))
        )
    methods = [m for m in sort_methods(by_method) if only is None or m in only]
    methods.sort(key=lambda m: _legend_key(styles[m]))
    sparsities = [c.global_sparsity for m in methods if m != "dense" for c in by_method[m]]
    sparsities += [s for points in published.values() for s, _ in points]
    _set_sparsity_axis(axes, resolve_x(x, sparsities))
    for method in methods:
        style = styles[method]
        points = sorted(by_method[method], key=lambda c: c.global_sparsity)
        if method == "dense":
            mean = points[0].mean * scale
            std = points[0].std * scale
            axes.axhline(mean, color=style.color, linestyle=style.linestyle, label="dense")
            if std:
                axes.axhspan(mean - std, mean + std, color=style.color, alpha=0.12)
            continue
        axes.errorbar(
            [cell.global_sparsity for cell in points],
            [cell.mean * scale for cell in points],
            yerr=[cell.std * scale for cell in points],
            color=style.color,
            marker=style.marker,
            markersize=6,
            linestyle=style.linestyle,
            linewidth=1.6,
            capsize=3,
            label=method,
        )
    if published:
        _plot_published(axes, task, scale, published, styles)
    axes.set_ylabel(metric_label(metric))
    shown = [m for m in methods if m != "dense"]
    axes.set_title(task if only is None else f"{task}: {' vs '.join(shown)}")
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
        handlelength=3.0,
    )
    figure.savefig(path, dpi=120, bbox_inches="tight")


def resolve_x(x, sparsities):
    """The x axis a frontier plot gets.

    Args:
        x: one of `X_AXES`.
        sparsities: the x values of the plotted points.

    Returns:
        "sparsity" or "remaining-log": `x` itself unless "auto", which is
        "remaining-log" when some point reaches `AUTO_LOG_FROM` sparsity.
    """
    if x not in X_AXES:
        raise ValueError(f"unknown x axis '{x}'; expected one of: {', '.join(X_AXES)}")
    if x != "auto":
        return x
    # Rounded: 89.99% achieved for a 90% target counts as 90%.
    reach = max((round(s, 3) for s in sparsities), default=0.0)
    return "remaining-log" if reach >= AUTO_LOG_FROM else "sparsity"


def _set_sparsity_axis(axes, x_axis):
    """Sets up the x axis ("sparsity" or "remaining-log"); ticks in percent
    of sparsity on both."""
    if x_axis == "remaining-log":
        axes.set_xscale("function", functions=(_nines, _from_nines))
        axes.xaxis.set_major_locator(ticker.FixedLocator(LOG_TICKS))
        axes.xaxis.set_minor_locator(ticker.NullLocator())
        axes.set_xlabel("Sparsity (log scale of the weights remaining, 1 - sparsity)")
    else:
        axes.set_xlabel("Sparsity")
    axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: _percent(value)))


def _nines(sparsity):
    """-log10 of the fraction of weights remaining: 90% -> 1, 99% -> 2."""
    remaining = 1.0 - np.asarray(sparsity, dtype=float)
    return -np.log10(np.clip(remaining, _MIN_REMAINING, None))


def _from_nines(nines):
    return 1.0 - 10.0 ** (-np.asarray(nines, dtype=float))


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


def method_family(method, structured=()):
    """The `FAMILIES` key of a method.

    Args:
        method: the method name.
        structured: the methods whose rows have a structure (unit pruning):
            unless known, they join "units".

    Returns:
        The family: the one that lists the method; else "units" for a
        structured one; else the family of the longest known method it is
        named after ("rigl_5x" -> "dynamic", "magnitude_2:4" -> "pruning");
        else "other".
    """
    for name, family in FAMILIES.items():
        if method in family.methods:
            return name
    if method in structured:
        return "units"
    known = sorted(
        ((m, name) for name, family in FAMILIES.items() for m in family.methods),
        key=lambda item: -len(item[0]),
    )
    for known_method, name in known:
        if method.startswith((known_method + "_", known_method + ":")):
            return name
    return "other"


def series_styles(methods, structured=()):
    """A distinct `Style` for each method.

    A known method (listed in its family) always has its family's slot for
    it, so the same look in every plot. The others take, in name order,
    their family's next slots that no method of `methods` has; pass every
    method of a report to give them the same look in all of its plots.

    Args:
        methods: method names.
        structured: the methods whose rows have a structure (see
            `method_family`).

    Returns:
        `{method: Style}`; no two methods share a (colour, marker) pair.
    """
    methods = set(methods)
    styles = {}
    taken = set()
    for method in methods:
        family = method_family(method, structured)
        if method in FAMILIES[family].methods:
            styles[method] = _slot_style(family, FAMILIES[family].methods.index(method))
            taken.add(styles[method].pair)
    for method in sorted(methods - set(styles)):
        family = method_family(method, structured)
        for slot in itertools.count(len(FAMILIES[family].methods)):
            style = _slot_style(family, slot)
            if style.pair not in taken:
                break
        styles[method] = style
        taken.add(style.pair)
    return styles


def _method_styles(methods, structured=()):
    """(colour, marker) per method: `series_styles` as pairs."""
    return {m: style.pair for m, style in series_styles(methods, structured).items()}


def _slot_style(family_name, slot):
    """The style of slot `slot` of a family: colours and markers cycle
    together (distinct pairs for colours x markers slots), then the same
    cycle again in darker, then lighter, shades of the palette."""
    family = FAMILIES[family_name]
    colors, markers = family.colors, family.markers
    color = colors[slot % len(colors)]
    lap = slot // (len(colors) * len(markers))
    if lap:
        # Towards black on odd laps, towards white on even ones, a bit
        # further on each; exact floats, so every lap's colours are new.
        target = (0.0, 0.0, 0.0) if lap % 2 else (1.0, 1.0, 1.0)
        amount = 1.0 - 0.6 ** ((lap + 1) // 2)
        rgb = mcolors.to_rgb(color)
        color = tuple(c + (t - c) * amount for c, t in zip(rgb, target))
    return Style(color, markers[slot % len(markers)], family.linestyle, family_name, slot)


def _legend_key(style):
    """Series in legend order: by family, then slot."""
    return (list(FAMILIES).index(style.family), style.slot)


def _report_methods(cells_by_task, paper):
    """Every method a report plots, the paper's included."""
    methods = {cell.method for cells in cells_by_task.values() for cell in cells}
    if paper:
        for task, cells in cells_by_task.items():
            if paper_lib.has_published(task, cells[0].metric):
                methods |= set(paper_lib.published_points(task))
                methods |= set(paper_lib.follow_up_points(task))
    return methods


def _plot_published(axes, task, scale, published, styles):
    """The paper's points: each method in its own colour and marker, hollow,
    on a thin dotted line."""
    for method in sorted(published, key=lambda m: _legend_key(styles[m])):
        style = styles[method]
        points = published[method]
        axes.plot(
            [sparsity for sparsity, _ in points],
            [value * scale for _, value in points],
            color=style.color,
            marker=style.marker,
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
