"""Tests of `tf_sparsity_models.reporting.sweep` and the `sweep` subcommand."""

import argparse
import itertools
import json
import pathlib
import shlex

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from tf_sparsity_models.reporting import cli  # noqa: E402
from tf_sparsity_models.reporting import report  # noqa: E402
from tf_sparsity_models.reporting import rows as rows_lib  # noqa: E402
from tf_sparsity_models.reporting import sweep  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Overrides conftest's Keras reset (about 0.3 s a test): nothing here
    # touches Keras.
    yield


SPEC = {
    "task": "resnet50",
    "methods": ["dense", "magnitude", "random"],
    "sparsities": [0.5, 0.9],
    "seeds": [0, 1],
    "hparams": {"learning_rate": [0.1, 0.01]},
    "args": {"steps": 100, "synthetic_data": True},
}
# dense ignores sparsities: 2 hparams x 2 seeds; pruning: 2 x 2 x 2 each.
NUM_RUNS = 4 + 8 + 8


def flag(argv, name):
    return argv[argv.index(f"--{name}") + 1]


class FakeTrainer:
    """Stands in for `tf-sparsity train`: records argv, writes result.json."""

    def __init__(self, fail=(), crash=(), no_result=()):
        self.calls = []
        self.fail, self.crash, self.no_result = fail, crash, no_result

    def __call__(self, argv):
        self.calls.append(argv)
        model_dir = pathlib.Path(flag(argv, "model_dir"))
        run_id = model_dir.name
        if run_id in self.crash:
            raise RuntimeError("out of memory")
        if run_id in self.fail:
            return 3
        if run_id in self.no_result:
            return 0
        sparsity = float(flag(argv, "sparsity"))
        row = {
            "task": flag(argv, "task"),
            "method": flag(argv, "method"),
            "target_sparsity": sparsity,
            "global_sparsity": sparsity,
            "steps": int(flag(argv, "steps")),
            "wall_time_s": 1.0,
            "seed": int(flag(argv, "seed")),
            "accuracy": 0.98 - 0.1 * sparsity,
            "main_metric": "accuracy",
            "run_id": run_id,
        }
        (model_dir / "result.json").write_text(json.dumps(row))
        return 0


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="tf-sparsity")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli.add_report_parser(subparsers)
    cli.add_sweep_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


# Grid expansion.


def test_expand_grid_count_and_contents(tmp_path):
    configs = sweep.expand_grid(SPEC, tmp_path)

    assert len(configs) == NUM_RUNS
    dense = [c for c in configs if c["method"] == "dense"]
    assert {c["sparsity"] for c in dense} == {0.0}
    assert len(dense) == 4
    for method in ("magnitude", "random"):
        grid = {
            (c["sparsity"], c["seed"], c["hparams"]["learning_rate"])
            for c in configs
            if c["method"] == method
        }
        assert grid == set(
            itertools.product((0.5, 0.9), (0, 1), (0.1, 0.01))
        )
    for config in configs:
        assert config["model_dir"] == str(tmp_path / config["run_id"])
        assert config["args"] == {"steps": 100, "synthetic_data": True}


def test_run_ids_are_unique_readable_and_deterministic(tmp_path):
    run_ids = [c["run_id"] for c in sweep.expand_grid(SPEC, tmp_path)]
    assert len(set(run_ids)) == NUM_RUNS
    assert "resnet50-magnitude-sp0.9-seed1-learning_rate0.01" in run_ids
    assert "resnet50-dense-sp0-seed0-learning_rate0.1" in run_ids

    # Same spec, with its keys and hparams written in another order.
    reordered = dict(reversed(list(SPEC.items())))
    reordered["hparams"] = {"learning_rate": [0.1, 0.01]}
    again = [c["run_id"] for c in sweep.expand_grid(reordered, tmp_path)]
    assert sorted(again) == sorted(run_ids)


def test_spec_files_json_and_yaml(tmp_path):
    json_path = tmp_path / "spec.json"
    json_path.write_text(json.dumps(SPEC))
    yaml_path = tmp_path / "spec.yaml"
    yaml_path.write_text(
        "task: resnet50\n"
        "methods: [dense, magnitude, random]\n"
        "sparsities: [0.5, 0.9]\n"
        "seeds: [0, 1]\n"
        "hparams: {learning_rate: [0.1, 0.01]}\n"
        "args: {steps: 100, synthetic_data: true}\n"
    )
    expected = sweep.expand_grid(SPEC, tmp_path)
    assert sweep.expand_grid(json_path, tmp_path) == expected
    assert sweep.expand_grid(str(yaml_path), tmp_path) == expected


def test_defaults_dense_only_needs_no_sparsities():
    configs = sweep.expand_grid({"task": "lenet5", "methods": ["dense"]})
    assert [(c["run_id"], c["model_dir"]) for c in configs] == [
        ("lenet5-dense-sp0-seed0", "lenet5-dense-sp0-seed0")
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": None}, "'task' must be a non-empty string"),
        ({"methods": []}, "'methods' must be a non-empty list"),
        ({"sparsities": [0.5, 1.0]}, "sparsity 1.0 is not a number in"),
        ({"seeds": [0, 0]}, "'seeds' has duplicate values"),
        ({"seeds": [0.5]}, "seed 0.5 is not an integer"),
        ({"hparams": {"lr": 0.1}}, "'hparams.lr' must be a non-empty list"),
        ({"args": {"seed": 3}}, "'seed' in 'args' is set by the sweep"),
        ({"args": {"learning_rate": 1}}, "both in 'hparams' and 'args'"),
        ({"args": {"x": [1]}}, "args.x must be a string, number or boolean"),
        ({"grid": {}}, "unknown key(s) grid"),
    ],
)
def test_malformed_specs(change, message):
    spec = {**SPEC, **change}
    with pytest.raises(ValueError) as error:
        sweep.expand_grid(spec)
    assert message in str(error.value)


def test_malformed_spec_files(tmp_path):
    bad = tmp_path / "spec.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="spec.json: invalid JSON"):
        sweep.expand_grid(bad)
    other = tmp_path / "spec.toml"
    other.write_text("")
    with pytest.raises(ValueError, match="must be .json, .yaml or .yml"):
        sweep.expand_grid(other)


# Print mode.


def test_print_mode_writes_one_command_per_run(tmp_path):
    commands = tmp_path / "commands.txt"
    summary = sweep.run_sweep(
        SPEC, tmp_path / "out", mode="print", print_file=commands
    )

    lines = commands.read_text().splitlines()
    assert len(lines) == NUM_RUNS == len(summary.ran)
    run_id = "resnet50-magnitude-sp0.9-seed1-learning_rate0.01"
    run_dir = tmp_path / "out" / run_id
    expected = [
        "tf-sparsity", "train",
        "--task", "resnet50",
        "--method", "magnitude",
        "--sparsity", "0.9",
        "--seed", "1",
        "--model_dir", str(run_dir),
        "--learning_rate", "0.01",
        "--steps", "100",
        "--synthetic_data", "true",
    ]  # fmt: skip
    assert expected in [shlex.split(line) for line in lines]
    assert not (tmp_path / "out").exists()  # Printing runs nothing.


def test_print_mode_to_stdout_skips_finished_runs(tmp_path, capsys):
    configs = sweep.expand_grid(SPEC, tmp_path)
    finished = pathlib.Path(configs[0]["model_dir"])
    finished.mkdir(parents=True)
    (finished / "result.json").write_text("{}")

    summary = sweep.run_sweep(SPEC, tmp_path, mode="print")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == NUM_RUNS - 1
    assert summary.skipped == [configs[0]["run_id"]]
    assert not any(configs[0]["run_id"] in line for line in lines)


# Local mode.


def test_local_mode_runs_skips_finished_and_reports_failures(tmp_path):
    configs = sweep.expand_grid(SPEC, tmp_path)
    ids = [c["run_id"] for c in configs]
    finished = pathlib.Path(configs[1]["model_dir"])
    finished.mkdir(parents=True)
    (finished / "result.json").write_text("{}")
    trainer = FakeTrainer(fail=[ids[2]], crash=[ids[3]], no_result=[ids[4]])

    summary = sweep.run_sweep(SPEC, tmp_path, mode="local", runner=trainer)

    assert summary.skipped == [ids[1]]
    assert dict(summary.failed) == {
        ids[2]: "exit status 3",
        ids[3]: "RuntimeError: out of memory",
        ids[4]: "exited 0 but wrote no result.json",
    }
    assert sorted(summary.ran) == sorted(set(ids) - set(ids[1:5]))
    assert len(trainer.calls) == NUM_RUNS - 1  # All but the finished one.
    assert trainer.calls[0][:2] == ["tf-sparsity", "train"]

    # Resuming reruns only the failed runs.
    again = FakeTrainer()
    summary = sweep.run_sweep(SPEC, tmp_path, mode="local", runner=again)
    assert sorted(summary.ran) == sorted(ids[2:5])
    assert len(summary.skipped) == NUM_RUNS - 3
    assert summary.failed == []


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown sweep mode 'cloud'"):
        sweep.run_sweep(SPEC, "out", mode="cloud")


def test_sweep_then_report(tmp_path):
    sweep.run_sweep(SPEC, tmp_path / "out", runner=FakeTrainer())
    rows = rows_lib.load_rows([tmp_path / "out"])
    assert len(rows) == NUM_RUNS

    report.write_report(rows, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    # Two seeds x two learning rates per cell.
    assert (
        "| magnitude |  | 93.00 ± 0.00 (4) @ 50.0% | 89.00 ± 0.00 (4) @ 90.0% |"
        in text
    )


# Command line.


def test_cli_sweep_print(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    base = ["sweep", str(spec), "--out", str(tmp_path / "o"), "--print"]
    assert run_cli(base) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == NUM_RUNS
    assert f"{NUM_RUNS} runs: {NUM_RUNS} printed" in captured.err

    target = tmp_path / "cmds.sh"
    assert run_cli(base + [str(target)]) == 0
    assert len(target.read_text().splitlines()) == NUM_RUNS


def test_cli_sweep_local_exit_codes(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "methods": ["dense"]}))
    out = tmp_path / "o"
    run_id = "resnet50-dense-sp0-seed0-learning_rate0.1"
    monkeypatch.setattr(sweep, "subprocess_runner", FakeTrainer(fail=[run_id]))
    assert run_cli(["sweep", str(spec), "--out", str(out)]) == 1
    assert f"failed: {run_id}: exit status 3" in capsys.readouterr().err

    monkeypatch.setattr(sweep, "subprocess_runner", FakeTrainer())
    assert run_cli(["sweep", str(spec), "--out", str(out)]) == 0
    assert "1 ran, 3 skipped" in capsys.readouterr().err


def test_cli_sweep_bad_spec(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "sparsities": [2]}))
    assert run_cli(["sweep", str(spec), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sweep spec: sparsity 2 is not a number")
    assert len(err.strip().splitlines()) == 1


# Startup: `report` and `sweep` load no Keras or TensorFlow.


def _imported_modules(argv, tmp_path, launcher):
    import os
    import subprocess
    import sys

    if launcher == "script":
        program = pathlib.Path(sys.executable).with_name("tf-sparsity")
        if not program.exists():
            pytest.skip("the tf-sparsity console script is not installed")
        command = [str(program)]
    else:
        command = [sys.executable, "-m", "tf_sparsity_models.cli"]
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1", MPLBACKEND="Agg")
    result = subprocess.run(
        command + argv, capture_output=True, text=True, cwd=str(tmp_path), env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # -X importtime lines: "import time: self | cumulative | package.module".
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("launcher", ["script", "module"])
@pytest.mark.parametrize("command", ["report", "sweep"])
def test_report_and_sweep_load_no_keras_or_tensorflow(command, launcher, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    for i in range(2):
        row = dict(task="lenet300", method="magnitude", target_sparsity=0.9,
                   global_sparsity=0.9, steps=10, wall_time_s=1.0, seed=i,
                   accuracy=0.9 + i / 100, main_metric="accuracy")
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "result.json").write_text(json.dumps(row))
    if command == "report":
        argv = ["report", str(tmp_path), "--out", str(tmp_path / "report")]
    else:
        argv = ["sweep", str(spec), "--out", str(tmp_path / "o"), "--print", str(tmp_path / "c.sh")]
    modules = _imported_modules(argv, tmp_path, launcher)
    assert "tf_sparsity_models.reporting.cli" in modules  # the profile is real
    # (`tf_sparsity` itself loads Keras.)
    heavy = sorted(
        m for m in modules if m.split(".")[0] in ("keras", "tensorflow", "jax", "tf_sparsity")
    )
    assert heavy == [], heavy[:10]
    if command == "report":
        assert (tmp_path / "report" / "report.md").exists()
    else:
        assert len((tmp_path / "c.sh").read_text().splitlines()) == NUM_RUNS
