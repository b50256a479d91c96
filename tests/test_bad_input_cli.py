"""Bad input to the commands (third round, issue #20): each case is refused
before any work, or warned about where it can be meant, in one line that
names the flag, value or file at fault."""

import json

import pytest

from tests import toy_task
from tf_sparsity_models import cli
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib
from tf_sparsity_models.reporting import sweep

pytestmark = pytest.mark.tensorflow


@pytest.fixture
def toy():
    task = task_lib.register(toy_task.ToyTask())
    yield task
    task_lib._REGISTERED.pop(task.name, None)


def error_line(capsys):
    """The one `error: ...` line the command printed on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# tf-sparsity train


def test_training_that_ends_before_the_schedule_warns_and_says_so_in_the_row(toy, tmp_path, capsys):
    model_dir = tmp_path / "run"
    argv = ["train", "--task", "toy", "--method", "magnitude", "--sparsity", "0.5",
            "--steps", "8", "--end_step", "100", "--model_dir", str(model_dir), "--verbose", "0"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("warning: training ends at step 7 (--steps 8), before the schedule: ")
    assert "MagnitudePruning ends at step 100: sparsity reaches" in warnings[0]
    assert "SparsityCallback" not in err  # Its account of the same is not repeated.
    row = json.loads((model_dir / "result.json").read_text())
    assert row["schedule_finished"] is False
    # Well short of the 50% target: the reason for the warning.
    assert row["global_sparsity"] < 0.2


def test_rewind_step_after_the_last_step_is_refused(capsys):
    argv = ["train", "--task", "resnet50", "--config", "tiny", "--method", "magnitude",
            "--sparsity", "0.5", "--steps", "8", "--rewind_step", "100", "--model_dir", "unused"]
    assert cli.main(argv) == 2
    line = error_line(capsys)
    assert "rewind_step 100" in line and "steps 8" in line
    with pytest.raises(ValueError, match="rewind_step 8 is not before the end of training"):
        config_lib.make_config(task_lib.get("resnet50"), "tiny", {"steps": 8, "rewind_step": 8})


def test_model_dir_that_is_a_file_is_refused_before_training(toy, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    argv = ["train", "--task", "toy", "--method", "magnitude", "--sparsity", "0.5",
            "--model_dir", str(existing)]
    assert cli.main(argv) == 2
    assert f"--model_dir {existing} is a file, not a directory" in error_line(capsys)
    assert existing.read_text() == "mine"


# tf-sparsity demo


def test_demo_refuses_a_method_that_learns_no_masks(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "fixed_mask", "--no_export", "--out", str(out), "--epochs", "1"]) == 2
    line = error_line(capsys)
    assert "method 'fixed_mask' keeps the masks it is given" in line
    assert not out.exists()  # Refused before the dense model trained.

    import numpy as np

    from tf_sparsity_models.demo import run

    images, labels = np.zeros((8, 28, 28), "float32"), np.zeros(8, "int64")
    with pytest.raises(ValueError, match="fixed_mask' keeps the masks it is given"):
        run.train_lenet("fixed_mask", epochs=1, verbose=0, data=((images, labels), (images, labels)))


def test_demo_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    existing = tmp_path / "demo_output"
    existing.write_text("mine")
    assert cli.main(["demo", "--no_export", "--out", str(existing)]) == 2
    assert f"--out {existing} is a file, not a directory" in error_line(capsys)


# tf-sparsity translate: files checked before the model loads (an empty
# --model_dir would fail with "has no model.keras" later).


def test_translate_names_an_input_that_is_not_utf8(tmp_path, capsys):
    latin1 = tmp_path / "news.en"
    latin1.write_bytes("Le caf\u00e9 est ferm\u00e9.\n".encode("latin-1"))
    argv = ["translate", "--model_dir", str(tmp_path), "--input", str(latin1)]
    assert cli.main(argv) == 2
    line = error_line(capsys)
    assert f"--input {latin1} is not UTF-8 text" in line and "0xe9" in line


def test_translate_refuses_an_output_that_is_a_directory(tmp_path, capsys):
    source = tmp_path / "news.en"
    source.write_text("The cat sees the dog.\n", encoding="utf-8")
    argv = ["translate", "--model_dir", str(tmp_path), "--input", str(source),
            "--output", str(tmp_path)]
    assert cli.main(argv) == 2
    assert f"--output {tmp_path} is a directory" in error_line(capsys)
    missing_parent = tmp_path / "no_such_dir" / "out.de"
    argv[-1] = str(missing_parent)
    assert cli.main(argv) == 2
    assert f"--output {missing_parent}: directory" in error_line(capsys)


# tf-sparsity sweep: the whole spec is checked against the task's config
# before anything is printed or run.

SPEC = {"task": "resnet50", "methods": ["magnitude"], "sparsities": [0.5, 0.9],
        "args": {"config": "tiny", "steps": 16}}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "resnet5"}, "sweep spec: unknown task 'resnet5' (known: "),
        ({"args": {"stepz": 10}},
         "sweep spec: args.stepz is not a flag of `tf-sparsity train --task resnet50` "
         "(did you mean 'steps'?)"),
        ({"hparams": {"batch_sise": [8, 16]}}, "sweep spec: hparams.batch_sise is not a flag"),
        ({"args": {"config": "tiny", "steps": 0}},
         "sweep spec: run resnet50-magnitude-sp0.5-seed0: steps must be at least 1, got 0"),
        ({"args": {"config": "huge"}},
         "sweep spec: run resnet50-magnitude-sp0.5-seed0: unknown config preset 'huge'"),
        ({"args": {"steps": "many"}}, "bad value 'many' for steps: expected an integer"),
        ({"args": {"set": "stepz=3"}}, "unknown config key 'stepz'"),
        ({"args": {"overwrite": True}}, "sweep spec: args.overwrite: not in sweeps"),
    ],
)
@pytest.mark.parametrize("printing", [True, False])
def test_sweep_refuses_a_spec_its_runs_would_refuse(change, message, printing, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, **change}))
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out)] + (["--print"] if printing else [])
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # No command printed...
    assert not out.exists()  # ...and none run.
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    with pytest.raises(ValueError, match="sweep spec: "):
        sweep.run_sweep({**SPEC, **change}, out, mode="print" if printing else "local",
                        runner=lambda argv: pytest.fail("a run started"))


def test_sweep_accepts_a_valid_spec_with_presets_and_set(tmp_path, capsys):
    spec = {**SPEC, "hparams": {"batch_size": [8, 16]}, "args": {"config": "tiny", "set": "steps=16"}}
    summary = sweep.run_sweep(spec, tmp_path, mode="print")
    assert len(summary.ran) == 4
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_config_modules_listed_for_sweeps_are_the_tasks_own():
    for name in task_lib.CONFIGS:
        config_class, presets = task_lib.config_spec(name)
        task = task_lib.get(name)
        assert config_class is task.config_class and presets is task.presets
