"""`benchmarks/shrink_speed.py` in smoke mode (tiny models), so that it
cannot rot. No timing assertions: only the rows, parameters and FLOPs."""

import json

import pytest

from benchmarks import shrink_speed

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def test_shrink_speed_tiny_writes_dense_and_pruned_rows(tmp_path):
    out = tmp_path / "shrink_speed.json"
    payload = shrink_speed.main(
        ["--tiny", "--fractions", "0.5", "--repeats", "2", "--batch1_calls", "2", "--warmup", "1",
         "--batch_sizes", "1,4", "--out", str(out)]
    )
    written = json.loads(out.read_text())
    assert written["results"] == json.loads(json.dumps(payload["results"]))
    assert written["machine"]["backend"] == "tensorflow" and written["machine"]["cpu_count"]
    rows = {(r["model"], r["variant"]): r for r in written["results"]}
    assert set(rows) == {
        ("resnet50", "dense"), ("resnet50", "units_50%"),
        ("encoder", "dense"), ("encoder", "ffn_50%"), ("encoder", "heads_25%"),
        ("encoder", "ffn_50%+heads_25%"),
    }
    for (model, variant), row in rows.items():
        dense = rows[(model, "dense")]
        assert row["median_s_b1"] > 0 and row["throughput_b4"] > 0
        assert len(row["times_s_b1"]) == 4 and len(row["times_s_b4"]) == 2
        if variant != "dense":
            assert row["params"] < dense["params"]
            assert row["flops"] < dense["flops"] and row["flop_reduction"] > 1
            assert row["max_rel_diff_vs_masked"] < 1e-4
    # The FFN groups are prunable; the residual stream (LayerNormalization) is not.
    groups = rows[("encoder", "dense")]["prunable_groups"]
    assert all("ffn_intermediate" in g for g in groups["units"]) and len(groups["units"]) == 2
    assert len(groups["heads"]) == 2
    # Attention scores are Einsum ops, which the TF profiler does not count.
    assert rows[("encoder", "dense")]["flops"] > rows[("encoder", "dense")]["flops_tf_profiler"]
    assert rows[("resnet50", "dense")]["flops"] == rows[("resnet50", "dense")]["flops_tf_profiler"]
    # Half the units: both the output channels and the next input channels halve.
    assert rows[("resnet50", "units_50%")]["flop_reduction"] > 2
    assert "| encoder | ffn_50%+heads_25% |" in shrink_speed.table(written["results"], [1, 4])
