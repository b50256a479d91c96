"""Tests of `tf_sparsity_models.reporting`: result rows, report.md, plots, CLI."""

import argparse
import json
import pathlib
import struct

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tf_sparsity_models.reporting import cli  # noqa: E402
from tf_sparsity_models.reporting import paper  # noqa: E402
from tf_sparsity_models.reporting import report  # noqa: E402
from tf_sparsity_models.reporting import rows as rows_lib  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Overrides conftest's Keras reset (about 0.3 s a test): nothing here
    # touches Keras.
    yield



def make_row(task="resnet50", method="magnitude", sparsity=0.9, seed=0, **kw):
    row = {
        "task": task,
        "method": method,
        "target_sparsity": sparsity,
        "global_sparsity": sparsity,
        "steps": 1000,
        "wall_time_s": 12.5,
        "seed": seed,
    }
    row.update(kw)
    return row


def write_result(directory, row):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "result.json").write_text(json.dumps(row))
    return directory / "result.json"


@pytest.fixture
def results_dir(tmp_path):
    """ResNet-50 runs: dense, and magnitude at 50% and 90%, three seeds."""
    root = tmp_path / "results"
    top1 = {
        ("dense", 0.0): (0.76, 0.77, 0.78),
        ("magnitude", 0.5): (0.75, 0.75, 0.75),
        ("magnitude", 0.9): (0.70, 0.72, 0.74),
    }
    for (method, sparsity), values in top1.items():
        for seed, value in enumerate(values):
            row = make_row(
                method=method,
                sparsity=sparsity,
                seed=seed,
                top1=value,
                global_sparsity=sparsity + 0.001 * seed,
                run_id=f"{method}-{sparsity}-{seed}",
            )
            if method == "magnitude":
                row["layers"] = [
                    {
                        "path": f"conv{i}",
                        "kernel": "kernel",
                        "size": 100,
                        "nonzero": 100 - 10 * i,
                        "sparsity": 0.1 * i,
                    }
                    for i in range(1, 6)
                ]
            write_result(root / f"{method}_{sparsity}_{seed}", row)
    return root


def markdown_table(text, heading):
    """Parses the table under `heading` into {method: {column: cell}}."""
    lines = text.splitlines()
    start = lines.index(heading) + 2
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    table = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(header[1:], cells[1:]))
    return table


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="tf-sparsity")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli.add_report_parser(subparsers)
    cli.add_sweep_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


# Finding and reading rows.


def test_load_rows_reads_all_row_files_and_skips_non_rows(tmp_path):
    write_result(tmp_path / "a" / "run1", make_row(top1=0.7, extra={"k": 1}))
    (tmp_path / "bench.json").write_text(
        json.dumps([make_row(seed=1, top1=0.71), make_row(seed=2, top1=0.72)])
    )
    (tmp_path / "more.jsonl").write_text(
        json.dumps(make_row(seed=3, top1=0.73))
        + "\n\n"
        + json.dumps(make_row(seed=4, top1=0.74))
        + "\n"
    )
    # Clearly not rows: machine info without "task", and a sweep spec.
    (tmp_path / "machine_info.json").write_text(json.dumps({"cpu": "x86"}))
    (tmp_path / "spec.json").write_text(
        json.dumps({"task": "resnet50", "methods": ["magnitude"]})
    )
    hidden = tmp_path / ".ipynb_checkpoints"
    write_result(hidden, make_row(seed=9, top1=0.1))

    rows = rows_lib.load_rows([tmp_path])

    assert sorted(row["seed"] for row in rows) == [0, 1, 2, 3, 4]
    first = next(row for row in rows if row["seed"] == 0)
    assert first["extra"] == {"k": 1}  # Extra keys are kept.
    assert first[rows_lib.SOURCE_KEY].endswith("run1/result.json")


def test_identical_rows_count_once(tmp_path):
    row = make_row(top1=0.7)
    write_result(tmp_path / "run", row)
    (tmp_path / "all.jsonl").write_text(json.dumps(row) + "\n")
    assert len(rows_lib.load_rows([tmp_path])) == 1


def test_missing_required_key_names_file_and_key(tmp_path):
    row = make_row(top1=0.7)
    del row["steps"]
    path = write_result(tmp_path / "run", row)
    with pytest.raises(ValueError) as error:
        rows_lib.load_rows([tmp_path])
    assert str(path) in str(error.value)
    assert "missing required key 'steps'" in str(error.value)


def test_result_json_without_task_is_an_error_not_skipped(tmp_path):
    write_result(tmp_path / "run", {"top1": 0.7})
    with pytest.raises(ValueError, match="missing required key 'task'"):
        rows_lib.load_rows([tmp_path])


def test_bad_jsonl_line_names_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(make_row(top1=0.7)) + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{path.name}:2: invalid JSON"):
        rows_lib.load_rows([path])


def test_wrong_types_are_rejected(tmp_path):
    path = write_result(tmp_path / "run", make_row(top1=0.7, sparsity=1.5))
    with pytest.raises(ValueError, match="'target_sparsity'"):
        rows_lib.load_rows([path])


def test_rows_without_a_target_are_kept_but_left_out_of_cells(tmp_path):
    on_grid = make_row(top1=0.7, sparsity=0.9)
    off_grid = {**make_row(top1=0.5, sparsity=0.9), "target_sparsity": None, "global_sparsity": 0.997}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(on_grid) + "\n" + json.dumps(off_grid) + "\n")
    rows = rows_lib.load_rows([path])
    assert len(rows) == 2
    (cell,) = rows_lib.aggregate(rows)
    assert cell.target_sparsity == pytest.approx(0.9) and cell.mean == pytest.approx(0.7)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no such file or directory"):
        rows_lib.load_rows([tmp_path / "nope"])


# Aggregation.


def test_aggregate_mean_sample_std_and_count(results_dir):
    cells = rows_lib.aggregate(rows_lib.load_rows([results_dir]))
    by_key = {(cell.method, cell.target_sparsity): cell for cell in cells}
    cell = by_key[("magnitude", 0.9)]
    assert cell.metric == "top1"
    assert cell.mean == pytest.approx(0.72)
    assert cell.std == pytest.approx(0.02)  # Sample std of .70, .72, .74.
    assert cell.count == 3
    assert cell.seeds == (0, 1, 2)
    assert cell.global_sparsity == pytest.approx(0.901)
    assert by_key[("magnitude", 0.5)].std == pytest.approx(0.0)


def test_main_metric_per_task_and_override():
    rows = [
        make_row(task="transformer", bleu=25.0, accuracy=0.6, main_metric="bleu"),
        make_row(task="lenet5", accuracy=0.99, top5=1.0, main_metric="accuracy"),
    ]
    metrics = {cell.task: cell.metric for cell in rows_lib.aggregate(rows)}
    assert metrics == {"transformer": "bleu", "lenet5": "accuracy"}
    cells = rows_lib.aggregate(rows, metric="top5")
    # Tasks without an explicitly asked metric are left out.
    assert [(cell.task, cell.mean) for cell in cells] == [("lenet5", 1.0)]


def test_unknown_metric_is_an_error():
    with pytest.raises(ValueError, match="unknown metric 'f1'.*top1"):
        rows_lib.aggregate([make_row(top1=0.7)], metric="f1")


# report.md and plots.


def test_report_markdown_holds_means_and_stds(results_dir, tmp_path):
    rows = rows_lib.load_rows([results_dir])
    written = report.write_report(rows, tmp_path / "out")

    assert written[0] == str(tmp_path / "out" / "report.md")
    text = (tmp_path / "out" / "report.md").read_text()
    table = markdown_table(text, "## resnet50: Top-1 accuracy (%)")
    assert list(table) == ["dense", "magnitude"]
    assert table["dense"]["0%"] == "77.00 ± 1.00 (3) @ 0.1%"
    assert table["dense"]["90%"] == ""
    assert table["magnitude"]["50%"] == "75.00 ± 0.00 (3) @ 50.1%"
    assert table["magnitude"]["90%"] == "72.00 ± 2.00 (3) @ 90.1%"
    assert "Published" not in text  # Only with paper=True.


def test_report_uses_bleu_for_transformer_and_metric_override(tmp_path):
    rows = [
        make_row(task="transformer", seed=0, bleu=25.0, accuracy=0.60),
        make_row(task="transformer", seed=1, bleu=27.0, accuracy=0.62),
    ]
    report.write_report(rows, tmp_path / "bleu")
    table = markdown_table(
        (tmp_path / "bleu" / "report.md").read_text(), "## transformer: BLEU (sacreBLEU)"
    )
    assert table["magnitude"]["90%"] == "26.00 ± 1.41 (2) @ 90.0%"

    report.write_report(rows, tmp_path / "acc", metric="accuracy")
    table = markdown_table(
        (tmp_path / "acc" / "report.md").read_text(),
        "## transformer: Accuracy (%)",
    )
    assert table["magnitude"]["90%"] == "61.00 ± 1.41 (2) @ 90.0%"

    # Tasks without an explicitly asked metric are named, not tabled.
    rows.append(make_row(task="lenet5", top1=0.9))
    report.write_report(rows, tmp_path / "mixed", metric="accuracy")
    text = (tmp_path / "mixed" / "report.md").read_text()
    assert "No 'accuracy' in the rows of: lenet5." in text
    assert "## lenet5" not in text


def test_frontier_pngs_are_valid(results_dir, tmp_path):
    rows = rows_lib.load_rows([results_dir])
    rows.append(make_row(task="lenet300", accuracy=0.97))
    written = report.write_report(rows, tmp_path / "out")

    for name in ("resnet50_frontier.png", "lenet300_frontier.png"):
        path = tmp_path / "out" / name
        assert str(path) in written
        width, height = png_size(path)
        assert width > 300 and height > 200
        assert path.stat().st_size > 5000


def test_frontier_plots_error_bars_at_achieved_sparsity(
    results_dir, tmp_path, monkeypatch
):
    figures = capture_figures(monkeypatch)
    report.write_report(rows_lib.load_rows([results_dir]), tmp_path / "out")

    axes = figures[0].axes[0]
    data_line, _, (bars,) = errorbar(axes, "magnitude").lines
    assert list(data_line.get_xdata()) == pytest.approx([0.501, 0.901])
    assert list(data_line.get_ydata()) == pytest.approx([75.0, 72.0])
    # Error bars span mean ± std, in percent.
    half_lengths = [abs(b[1][1] - b[0][1]) / 2 for b in bars.get_segments()]
    assert half_lengths == pytest.approx([0.0, 2.0])
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["dense", "magnitude"]
    # Points reach 90%: the log-remaining axis, in sparsity coordinates.
    assert axes.get_xscale() == "function"
    assert axes.get_xlabel().startswith("Sparsity")


def test_paper_overlay(results_dir, tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    report.write_report(
        rows_lib.load_rows([results_dir]), tmp_path / "out", paper=True
    )

    axes = figures[0].axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    overlay = lines["paper: magnitude"]
    assert overlay.get_markerfacecolor() == "none"  # Hollow markers.
    assert list(overlay.get_xdata()) == [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    assert list(overlay.get_ydata()) == pytest.approx(
        [76.53, 76.38, 75.58, 73.91, 70.59, 57.9]
    )
    assert "paper: dense" in lines
    # Same colour as our own magnitude line.
    own_line = errorbar(axes, "magnitude").lines[0]
    assert overlay.get_color() == own_line.get_color()
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Published" in text and "| magnitude | 76.53 | 76.38 |" in text
    assert "No published l0 result" in text
    # RigL's published ResNet-50 numbers, cited as later work.
    assert list(lines["paper: rigl"].get_ydata()) == pytest.approx([75.12, 73.07])
    assert "Later work on this task (Evci" in text and "| rigl_5x | 77.17 | 76.42 |" in text


def test_no_paper_overlay_for_other_tasks(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    rows = [make_row(task="lenet300", accuracy=0.97)]
    report.write_report(rows, tmp_path / "out", paper=True)
    labels = [line.get_label() for line in figures[0].axes[0].get_lines()]
    assert not any(label.startswith("paper") for label in labels)


def test_layers_chart_by_run_id_and_directory_name(results_dir, tmp_path):
    rows = rows_lib.load_rows([results_dir])
    written = report.write_report(
        rows, tmp_path / "a", layers_run="magnitude-0.9-1"
    )
    path = tmp_path / "a" / "resnet50_magnitude_layers.png"
    assert written[-1] == str(path)
    assert png_size(path)[0] > 300

    # The run's directory name works as its id too.
    written = report.write_report(
        rows, tmp_path / "b", layers_run="magnitude_0.5_2"
    )
    assert written[-1].endswith("resnet50_magnitude_layers.png")


def test_layers_chart_errors(results_dir, tmp_path):
    rows = rows_lib.load_rows([results_dir])
    with pytest.raises(ValueError, match="no result row has run id 'nope'"):
        report.write_report(rows, tmp_path / "out", layers_run="nope")
    assert not (tmp_path / "out").exists()  # Nothing half-written.
    with pytest.raises(ValueError, match="no per-layer 'layers' list"):
        report.write_report(rows, tmp_path / "out", layers_run="dense-0.0-0")


# Styles: every series its own look, the same in every plot.


def synthetic_rows(task, methods, sparsities=(0.5, 0.8), **kw):
    rows = [make_row(task=task, method="dense", sparsity=0.0, accuracy=0.9)]
    for index, method in enumerate(methods):
        for sparsity in sparsities:
            rows.append(
                make_row(task=task, method=method, sparsity=sparsity, accuracy=0.8 - 0.01 * index, **kw)
            )
    return rows


def plotted_series(axes):
    """{label: (RGBA colour, marker, line style)} of the measured series."""
    series = {}
    for container in axes.containers:
        line = container.lines[0]
        series[container.get_label()] = (
            matplotlib.colors.to_rgba(line.get_color()),
            line.get_marker(),
            line.get_linestyle(),
        )
    return series


MANY_METHODS = [
    "magnitude", "random", "tfmot_magnitude", "magnitude_erk", "magnitude_regrowth",
    "variational_dropout", "l0", "rigl", "set", "static_sparse", "lottery", "scratch_e",
    "magnitude_units", "rigl_5x", "magnitude_2:4", "mystery_a", "mystery_b", "mystery_c",
]


def test_every_series_of_a_plot_has_its_own_colour_and_marker(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    report.write_report(synthetic_rows("lenet300", MANY_METHODS), tmp_path)
    series = plotted_series(figures[0].axes[0])
    assert sorted(series) == sorted(MANY_METHODS)
    pairs = [(colour, marker) for colour, marker, _ in series.values()]
    assert len(set(pairs)) == len(MANY_METHODS)
    # Pairs that a small palette would draw alike.
    for a, b in [("magnitude", "magnitude_erk"), ("random", "magnitude_regrowth"),
                 ("variational_dropout", "rigl"), ("l0", "set")]:
        assert series[a][:2] != series[b][:2]
    # The legend groups families: pruning, regularized, dynamic, ...
    labels = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    assert labels[:3] == ["dense", "magnitude", "random"]
    assert labels.index("rigl") > labels.index("l0") > labels.index("magnitude_erk")


@pytest.mark.parametrize("family", ["pruning", "other"])
def test_styles_stay_distinct_past_a_familys_palette(family):
    # Far more series in one family than colours x markers.
    names = [f"{'magnitude_' if family == 'pruning' else 'zz'}{i}" for i in range(60)]
    styles = report.series_styles(names)
    assert {style.family for style in styles.values()} == {family}
    assert len({style.pair for style in styles.values()}) == 60
    for style in styles.values():
        matplotlib.colors.to_rgba(style.color)  # A valid colour.


def test_method_families_and_line_styles():
    family = report.method_family
    assert family("magnitude") == family("random") == family("magnitude_2:4") == "pruning"
    assert family("variational_dropout") == family("l0") == "regularized"
    assert family("rigl") == family("set") == family("static_sparse") == family("rigl_9x") == "dynamic"
    assert family("lottery") == family("scratch_b") == family("lottery_late") == "learned_mask"
    assert family("magnitude_units") == "units"
    assert family("channel_prune", structured={"channel_prune"}) == "units"
    assert family("something_new") == "other"
    styles = report.series_styles(MANY_METHODS)
    by_family = {}
    for style in styles.values():
        by_family.setdefault(style.family, set()).add(str(style.linestyle))
    # One line style per family, a different one for each family.
    assert all(len(linestyles) == 1 for linestyles in by_family.values())
    assert len({next(iter(ls)) for ls in by_family.values()}) == len(by_family)
    # Families keep to their own palettes.
    palettes = [set(f.colors) for f in report.FAMILIES.values()]
    assert sum(len(p) for p in palettes) == len(set().union(*palettes))


def test_same_method_same_style_in_every_plot(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    rows = synthetic_rows("lenet300", ["magnitude", "rigl", "mystery_b", "l0"])
    rows += synthetic_rows("lenet5", ["set", "mystery_a", "mystery_b", "magnitude"])
    report.write_report(rows, tmp_path)
    first, second = (plotted_series(figure.axes[0]) for figure in figures)
    for method in ("magnitude", "mystery_b"):
        assert first[method] == second[method]
    # Known methods keep their look whatever else is plotted, in any report.
    alone = report.series_styles(["magnitude"])["magnitude"]
    crowded = report.series_styles(MANY_METHODS)["magnitude"]
    assert alone == crowded
    assert report._method_styles(["rigl"])["rigl"] == report._method_styles(MANY_METHODS)["rigl"]


def test_paper_points_take_their_methods_look_hollow(results_dir, tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    report.write_report(rows_lib.load_rows([results_dir]), tmp_path, paper=True)
    axes = figures[0].axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    styles = report.series_styles(["magnitude", "rigl", "rigl_5x", "random"])
    for method in ("magnitude", "rigl", "rigl_5x", "random"):
        line = lines[f"paper: {method}"]
        assert matplotlib.colors.to_rgba(line.get_color()) == matplotlib.colors.to_rgba(styles[method].color)
        assert line.get_marker() == styles[method].marker
        assert line.get_markerfacecolor() == "none" and line.get_linestyle() == ":"


# The x axis.


@pytest.mark.parametrize(
    "sparsities, expected",
    [((0.5, 0.8), "linear"), ((0.5, 0.9), "function"), ((0.9, 0.95, 0.98), "function"),
     ((0.5, 0.8999), "function")],  # 89.99% achieved for a 90% target.
)
def test_default_x_axis_is_log_remaining_from_90_percent(tmp_path, monkeypatch, sparsities, expected):
    figures = capture_figures(monkeypatch)
    report.write_report(synthetic_rows("lenet300", ["magnitude"], sparsities), tmp_path)
    axes = figures[0].axes[0]
    assert axes.get_xscale() == expected
    formatter = axes.xaxis.get_major_formatter()
    assert formatter(0.95, 0) == "95%" and formatter(0.5, 0) == "50%"
    if expected == "function":
        # Evenly spaced nines: 90% -> 1, 99% -> 2, 99.9% -> 3; 0% at 0.
        transform = axes.xaxis.get_transform()
        assert transform.transform([0.0, 0.9, 0.99, 0.999]) == pytest.approx([0, 1, 2, 3])
        ticks = list(axes.xaxis.get_major_locator()())
        assert {0.5, 0.7, 0.8, 0.9, 0.95, 0.98} <= set(ticks)
        assert "remaining" in axes.get_xlabel()
    else:
        assert axes.get_xlabel() == "Sparsity"


@pytest.mark.parametrize(
    "flag, sparsities, expected",
    [("sparsity", (0.5, 0.98), "linear"), ("remaining-log", (0.5, 0.8), "function"),
     ("auto", (0.5, 0.98), "function"), (None, (0.5, 0.8), "linear")],
)
def test_cli_x_flag(tmp_path, monkeypatch, flag, sparsities, expected):
    figures = capture_figures(monkeypatch)
    rows = synthetic_rows("lenet300", ["magnitude", "magnitude_units"], sparsities)
    rows[-1]["structure"] = rows[-2]["structure"] = "units"
    rows.append(make_row(task="lenet300", method="magnitude", sparsity=sparsities[-1], accuracy=0.7,
                         structure="unstructured"))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["report", str(path), "--out", str(tmp_path / "out")] + (["--x", flag] if flag else [])
    assert run_cli(argv) == 0
    # The task's plot and its units plot.
    assert len(figures) == 2
    assert [figure.axes[0].get_xscale() for figure in figures] == [expected] * 2


def test_bad_x_axis(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(["report", str(tmp_path), "--out", str(tmp_path), "--x", "log"])
    assert "invalid choice: 'log'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown x axis 'log'"):
        report.write_report([make_row(top1=0.7)], tmp_path, x="log")


# report.html.


def test_report_html_has_every_table_and_image(results_dir, tmp_path):
    rows = rows_lib.load_rows([results_dir])
    rows.append(make_row(task="lenet300", accuracy=0.97))
    out = tmp_path / "out"
    written = report.write_report(rows, out, paper=True, layers_run="magnitude-0.9-0")
    html_path = out / "report.html"
    assert written[:2] == [str(out / "report.md"), str(html_path)]
    page = html_path.read_text()
    text = (out / "report.md").read_text()
    tables = sum(1 for a, b in zip(text.splitlines(), text.splitlines()[1:])
                 if a.startswith("|") and b.startswith("| ---"))
    assert tables >= 3  # Ours, the paper's, RigL's.
    assert page.count("<table>") == tables
    assert "<th>method</th>" in page and "<td>77.00 ± 1.00 (3) @ 0.1%</td>" in page
    images = [pathlib.Path(path).name for path in written if path.endswith(".png")]
    assert len(images) == 3  # Two frontiers, one layers chart.
    for name in images:
        assert f'<img src="{name}"' in page  # Relative: beside the page.
    # Each plot sits in its task's section.
    assert page.index("lenet300_frontier.png") > page.index('id="lenet300_accuracy"')
    assert page.index("resnet50_magnitude_layers.png") > page.index('id="resnet50_top-1_accuracy"')
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_report_html_can_embed_images(results_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli(["report", str(results_dir), "--out", str(out), "--embed-images"]) == 0
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 1
    assert '<img src="resnet50' not in page


def test_render_html_escapes_and_keeps_unplaced_figures(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(PNG_SIGNATURE)
    page = report.render_html(
        "# T\n\nSome <b> & `code`.\n\n## a: b\n\n| m | <x> |\n| --- | --- |\n| 1 | 2 |\n",
        {"a: b": [], None: [png]},
    )
    assert "Some &lt;b&gt; &amp; <code>code</code>." in page
    assert "<th>&lt;x&gt;</th>" in page and "<td>2</td>" in page
    assert page.index('<img src="x.png"') > page.index("Other figures")


def test_write_report_rejects_no_rows(tmp_path):
    with pytest.raises(ValueError, match="no result rows"):
        report.write_report([], tmp_path)


# Published numbers.


def test_published_numbers_in_row_units():
    points = paper.published_points("resnet50")
    assert points["magnitude"][0] == pytest.approx((0.5, 0.7653))
    assert "l0" not in points  # Not published for ResNet-50.
    mean, std, runs = paper.published_dense("resnet50")
    assert mean == pytest.approx((0.7667 + 0.768 + 0.7659) / 3)
    assert runs == 3
    transformer = paper.published_points("transformer")
    assert sorted(transformer) == [
        "l0",
        "magnitude",
        "random",
        "variational_dropout",
    ]
    assert all(len(points) == 7 for points in transformer.values())
    assert transformer["l0"][0] == (0.5, 26.72)
    assert paper.published_dense("transformer")[2] == 5
    assert paper.published_points("lenet5") == {}


# Command line.


def test_cli_report(results_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli(
        ["report", str(results_dir), "--out", str(out), "--paper"]
        + ["--layers", "magnitude-0.9-0"]
    )
    assert code == 0
    assert (out / "report.md").is_file()
    assert (out / "resnet50_frontier.png").is_file()
    assert (out / "resnet50_magnitude_layers.png").is_file()
    assert "Read 9 result rows" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metric", "f1"], "error: unknown metric 'f1'"),
        (["--layers", "nope"], "error: no result row has run id 'nope'"),
    ],
)
def test_cli_report_bad_input(results_dir, tmp_path, capsys, extra, message):
    code = run_cli(["report", str(results_dir), "--out", str(tmp_path)] + extra)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1  # One line, no traceback.


def test_cli_report_no_rows(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = run_cli(["report", str(tmp_path / "empty"), "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: no result rows found")


def errorbar(axes, label):
    """The error-bar container plotted with `label`."""
    (container,) = [c for c in axes.containers if c.get_label() == label]
    return container


def capture_figures(monkeypatch):
    """Records every figure `report` saves, still writing the files."""
    figures = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures
