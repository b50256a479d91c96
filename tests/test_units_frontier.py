"""The units variant of the MNIST quality frontier (benchmarks/frontier.py):
unit pruning, shrunk, against unstructured magnitude pruning at the same
parameter count."""

import json

import pytest

from benchmarks import frontier
from tf_sparsity_models.reporting import report as report_lib
from tf_sparsity_models.reporting import rows as rows_lib


@pytest.mark.tensorflow
@pytest.mark.slow
def test_units_runs_pair_with_unstructured_runs_at_equal_parameter_count(tmp_path):
    arguments = ["--models", "lenet300", "--methods", "units", "--unit_fractions", "0.5", "--seeds", "0",
                 "--epochs", "1", "--train_examples", "512", "--out", str(tmp_path)]
    frontier.main(arguments)
    rows_path = tmp_path / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert [row["run_key"] for row in rows] == ["units@0.5", "magnitude_matched@0.5"]
    units, partner = rows

    assert units["method"] == "magnitude_units" and units["structure"] == "units"
    assert units["unit_fraction"] == 0.5 and units["seed"] == partner["seed"] == 0
    # The shrunk model is what is measured, and it behaves as the sparse one.
    assert units["accuracy"] == units["accuracy_sparse"] and units["shrunk_accuracy_equal"]
    assert units["shrunk_prediction_changes"] == 0
    assert units["params_shrunk"] < units["params_dense"]
    assert units["units_kept"] == {"fc1": 150, "fc2": 50, "fc3": 10}  # The output layer keeps its units.
    # Parameter sparsity, not the unit fraction: 1 - (784*150 + 150*50 + 50*10) / (784*300 + 300*100 + 100*10).
    dense, kept = 784 * 300 + 300 * 100 + 100 * 10, 784 * 150 + 150 * 50 + 50 * 10
    assert (units["kernel_weights_dense"], units["kernel_weights"]) == (dense, kept)
    assert units["global_sparsity"] == pytest.approx(1 - kept / dense)
    assert units["global_sparsity"] == pytest.approx(units["mask_global_sparsity"])

    assert partner["method"] == "magnitude" and partner["structure"] == "unstructured"
    assert partner["matched_to"] == "units@0.5"
    assert partner["target_sparsity"] == units["target_sparsity"]
    assert partner["global_sparsity"] == pytest.approx(units["global_sparsity"], abs=1e-4)
    assert abs(partner["kernel_weights"] - units["kernel_weights"]) <= 0.0001 * dense

    # The report puts both in the same column of the table.
    report_lib.write_report(rows_lib.load_rows([str(tmp_path)]), tmp_path / "report")
    table = (tmp_path / "report" / "report.md").read_text()
    column = report_lib._percent(units["target_sparsity"])
    assert f"| {column} |" in table
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| magnitude")}
    assert lines.keys() == {"| magnitude", "| magnitude_units"}
    assert all(f"@ {report_lib._percent(units['global_sparsity'], digits=1)}" in line for line in lines.values())
    assert (tmp_path / "report" / "lenet300_frontier.png").exists()

    # Resumable: a second call trains nothing.
    frontier.main(arguments)
    assert len(rows_path.read_text().splitlines()) == 2


def _row(method, target, accuracy, seed, **extra):
    return rows_lib.make_row(
        task="lenet300", method=method, target_sparsity=target, global_sparsity=target or 0.0,
        steps=10, wall_time_s=1.0, main_metric="accuracy", metrics={"accuracy": accuracy}, seed=seed, **extra,
    )


def test_report_pairs_units_runs_with_unstructured_runs_at_their_targets(tmp_path):
    rows = [_row("dense", 0.0, 0.92, 0), _row("magnitude", 0.5, 0.93, 0)]
    for seed, (units, partner) in enumerate([(0.90, 0.91), (0.92, 0.91)]):
        rows.append(_row("magnitude_units", 0.91, units, seed, structure="units", unit_fraction=0.9,
                         kernel_weights=23920, kernel_weights_dense=266200))
        rows.append(_row("magnitude", 0.91, partner, seed, structure="unstructured", unit_fraction=0.9))
    cells = rows_lib.aggregate(rows)
    assert report_lib.structured_methods(cells) == {"magnitude_units": ["magnitude"]}

    written = report_lib.write_report(rows, tmp_path)
    assert str(tmp_path / "lenet300_magnitude_units_frontier.png") in written
    table = (tmp_path / "report.md").read_text()
    assert "| 90% | 23,920 of 266,200 | 91.0% | 91.00 ± 1.41 (2) | 91.00 ± 0.00 (2) | +0.00 |" in table


def test_every_method_of_a_plot_has_its_own_style():
    methods = report_lib.sort_methods(
        ["dense", "magnitude", "random", "variational_dropout", "l0", "tfmot_magnitude", "magnitude_erk",
         "magnitude_regrowth", "magnitude_units", "rigl", "set", "static_sparse"]
    )
    styles = report_lib._method_styles(methods)
    assert len(set(styles.values())) == len(methods)
    # Methods the report knows keep their style whatever else is plotted.
    assert styles["magnitude"] == report_lib._method_styles(["magnitude", "magnitude_units"])["magnitude"]
    # The others take colours no known method of the plot has, while some are left.
    known = {styles[m][0] for m in methods if m in report_lib.METHOD_ORDER}
    assert styles["magnitude_units"][0] not in known
