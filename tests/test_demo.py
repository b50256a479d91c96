import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def tf_sparsity_command():
    return os.path.join(os.path.dirname(sys.executable), "tf-sparsity")


def test_demo_trains_to_90_percent_and_exports(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [tf_sparsity_command(), "demo", "magnitude", "--epochs", "12", "--out", str(out), "--verbose", "2"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dense accuracy:" in result.stdout
    assert "fc1" in result.stdout and "global" in result.stdout
    sparse = json.loads((out / "magnitude" / "result.json").read_text())
    dense = json.loads((out / "dense" / "result.json").read_text())
    assert sparse["global_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert dense["accuracy"] > 0.85
    assert sparse["accuracy"] > dense["accuracy"] - 0.03
    assert (out / "export" / "1" / "saved_model.pb").exists()


def test_cli_reports_bad_input_in_one_line():
    result = subprocess.run(
        [tf_sparsity_command(), "demo", "nope", "--no_export"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: Unknown method 'nope'")
