"""The hand-run benchmarks in smoke mode, so that they cannot rot."""

import importlib.util
import json

import pytest

from benchmarks import frontier
from benchmarks import mask_update
from benchmarks import oneshot
from benchmarks import step_time

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

HAS_TFMOT = importlib.util.find_spec("tensorflow_model_optimization") is not None


def test_step_time_smoke():
    payload = step_time.main(
        ["--models", "lenet300", "--methods", "magnitude,l0", "--steps", "3", "--rounds", "1",
         "--batch_size", "16", "--frequency", "2", "--no_write"]
    )
    rows = {row["method"]: row for row in payload["results"]}
    assert set(rows) == {"dense", "magnitude", "l0"}
    assert rows["dense"]["ratio_median"] == 1.0
    assert rows["magnitude"]["steps_timed"] == 3 and rows["magnitude"]["median_step_s"] > 0
    assert payload["machine"]["backend"] == "tensorflow"


def test_oneshot_smoke():
    payload = oneshot.main(
        ["--config", "tiny", "--methods", "sparsegpt", "--num_samples", "4", "--sequence_length", "16", "--no_write"]
    )
    (row,) = payload["results"]
    assert row["method"] == "sparsegpt" and row["pruned_layers"] == 12
    assert row["seconds"] > 0 and row["peak_rss_mib"] >= row["peak_rss_before_pruning_mib"] > 0


@pytest.mark.skipif(not HAS_TFMOT, reason="needs the tfmot extra")
def test_mask_update_smoke_with_tfmot():
    payload = mask_update.main(["--sizes", "1e4", "--repeats", "1", "--no_write", "--step_time_s", "0.01"])
    (row,) = payload["results"]
    assert row["tf_sparsity_s"] > 0 and row["tfmot_s"] > 0
    assert row["amortized_fraction"] == pytest.approx(row["tf_sparsity_s"] / (2000 * 0.01))


def test_mask_update_smoke_with_several_kernels_trained_by_adam():
    payload = mask_update.main(["--sizes", "256", "--kernels", "3", "--repeats", "2", "--no_write"])
    (row,) = payload["results"]
    assert row["kernels"] == 3 and row["tf_sparsity_s"] > 0 and row["tfmot_s"] is None
    for bad in (["--kernels", "0"], ["--kernels", "3", "--sizes", "1000"]):
        with pytest.raises(SystemExit):
            mask_update.main([*bad, "--no_write"])


@pytest.mark.skipif(not HAS_TFMOT, reason="needs the tfmot extra")
def test_frontier_smoke_writes_result_rows(tmp_path):
    frontier.main(
        ["--models", "lenet300", "--methods", "dense,magnitude,variational_dropout,tfmot",
         "--sparsities", "0.5", "--seeds", "0", "--epochs", "1", "--vd_factors", "0.1", "--out", str(tmp_path)]
    )
    def recorded():
        return [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]

    rows = {r["method"]: r for r in recorded()}
    assert sorted(rows) == ["dense", "magnitude", "tfmot_magnitude", "variational_dropout"]
    assert rows["magnitude"]["global_sparsity"] == pytest.approx(0.5, abs=1e-3)
    tfmot_row = rows["tfmot_magnitude"]
    assert tfmot_row["library"] == "tfmot" and tfmot_row["global_sparsity"] == pytest.approx(0.5, abs=1e-3)
    # Resumable: a second call skips every finished run.
    frontier.main(
        ["--models", "lenet300", "--methods", "dense,magnitude", "--sparsities", "0.5", "--seeds", "0",
         "--epochs", "1", "--out", str(tmp_path)]
    )
    assert len(recorded()) == 4


def test_frontier_bins_regularized_runs_by_density():
    targets = (0.5, 0.9, 0.98)
    assert frontier.bin_target(0.57, targets) == 0.5
    assert frontier.bin_target(0.985, targets) == 0.98
    assert frontier.bin_target(0.9967, targets) is None  # 6x sparser than 98%.
    assert frontier.bin_target(0.1, targets) is None


def test_export_benchmark_smoke():
    from benchmarks import export

    payload = export.main(["--models", "lenet300", "--batch_sizes", "1", "--repeats", "6", "--no_write"])
    (row,) = payload["results"]
    assert row["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert row["sparse_gzip_bytes"] < 0.5 * row["dense_gzip_bytes"]
    assert row["latency_ratio_b1"] > 0


def test_learned_masks_smoke_trains_every_variant_on_the_pruned_masks(tmp_path):
    from benchmarks import learned_masks

    rows = learned_masks.main(["--sparsities", "0.9", "--epochs", "1", "--out", str(tmp_path)])
    assert [r["method"] for r in rows] == ["magnitude", *learned_masks.VARIANTS]
    for row in rows:
        assert row["global_sparsity"] == pytest.approx(0.9, abs=1e-3), row["method"]
    scratch_b = next(r for r in rows if r["method"] == "scratch_b")
    assert scratch_b["steps"] == 2 * rows[0]["steps"]
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 5


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert")
def test_litert_latency_smoke(tmp_path):
    from benchmarks import litert_speed as litert

    payload = litert.main(
        ["latency", "--models", "lenet300", "--batches", "1", "--rounds", "1", "--calls", "2",
         "--name", str(tmp_path / "latency")]
    )
    rows = {row["variant"]: row for row in payload["rows"]}
    assert {"dense", "keras_xla_dense", "block_1x4_0.9", "unstructured_0.9"} <= set(rows)
    assert rows["block_1x4_0.9"]["storage"] == ["block-sparse 1x4"]
    assert rows["unstructured_0.9"]["storage"] == ["sparse, densified"]
    assert rows["block_1x4_0.95"]["file_bytes"] < rows["dense"]["file_bytes"] / 10
    assert "block 1x4 90%" in litert.table(payload)
