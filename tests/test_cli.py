"""The `tf-sparsity` command's parser: every flag of every subcommand has a
help text, `train --help` names the methods and tasks, and tasks add their
own subcommands through the task registry."""

import re
import sys
import types

import pytest

import tf_sparsity as tfs
from tf_sparsity_models import cli
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import task as task_lib


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Overrides conftest's Keras reset: nothing here builds a model.
    yield


def help_output(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def flag_help(text):
    """`{argument: help text}` from argparse `--help` output.

    An argument's entry starts two spaces in (`  --steps STEPS  help`); its
    help follows on the same line or on the deeper-indented lines below
    (`  --synthetic_data [SYNTHETIC_DATA]`, then the help on its own line).
    """
    helps, current, in_section = {}, None, False
    for line in text.splitlines():
        if not line.strip():
            current = None
        elif not line.startswith(" "):
            # "options:", "positional arguments:", a group's title.
            in_section = line.endswith(":") and not line.startswith("usage:")
            current = None
        elif in_section and not line.startswith("   "):
            invocation, _, help_text = line.strip().partition("  ")
            # "-h, --help" -> "--help"; "--task TASK" -> "--task".
            current = invocation.split(", ")[-1].split(" ")[0]
            helps[current] = help_text.strip()
        elif in_section and current is not None:
            helps[current] = f"{helps[current]} {line.strip()}".strip()
    return helps


def test_flag_help_parses_both_layouts():
    text = (
        "usage: x [-h] [--steps STEPS]\n"
        "             [--synthetic_data [SYNTHETIC_DATA]]\n\n"
        "options:\n"
        "  -h, --help     show this help message and exit\n"
        "  --steps STEPS  training\n"
        "                 steps\n"
        "  --synthetic_data [SYNTHETIC_DATA]\n"
        "                 random data\n"
        "  --bare\n"
    )
    assert flag_help(text) == {
        "--help": "show this help message and exit",
        "--steps": "training steps",
        "--synthetic_data": "random data",
        "--bare": "",
    }


@pytest.mark.parametrize("task_name", task_lib.names())
def test_train_help_explains_every_flag(task_name, capsys):
    text = help_output(capsys, ["train", "--task", task_name])
    helps = flag_help(text)
    config_flags = {
        f"--{name}" for name in config_lib.fields(task_lib.get(task_name).config_class)
    } - {"--task"}
    assert config_flags <= set(helps)
    assert {"--task", "--model_dir", "--config", "--set", "--verbose"} <= set(helps)
    assert [flag for flag, help_text in helps.items() if not help_text] == []
    words = set(re.findall(r"[\w-]+", text))
    assert set(tfs.METHODS) <= words
    assert set(task_lib.names()) <= words
    # The method flag's help lists them.
    assert set(tfs.METHODS) <= set(re.findall(r"[\w-]+", helps["--method"]))


@pytest.mark.core
@pytest.mark.parametrize(
    "command, expected",
    [
        ("demo", {"method", "--sparsity", "--epochs", "--batch_size", "--learning_rate", "--seed"}),
        ("translate", {"--model_dir", "--export", "--beam_size", "--batch_size"}),
        ("report", {"RESULT_DIRS", "--out", "--metric", "--paper", "--layers"}),
        ("sweep", {"SPEC", "--out", "--print"}),
    ],
)
def test_subcommand_help_explains_every_flag(command, expected, capsys):
    helps = flag_help(help_output(capsys, [command]))
    assert expected <= set(helps)
    assert [flag for flag, help_text in helps.items() if not help_text] == []


@pytest.mark.core
def test_tasks_add_their_subcommands(monkeypatch, capsys):
    assert task_lib.command_modules() == ["tf_sparsity_models.transformer.cli"]
    assert "translate" in help_output(capsys, [])

    def add_parser(subparsers):
        parser = subparsers.add_parser("toy_command", help="the toy task's own command")
        parser.set_defaults(func=lambda args: print("toy ran") or 0)

    module = types.ModuleType("toy_task_commands")
    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, module.__name__, module)

    class ToyTask(task_lib.Task):
        name = "toy_with_command"
        commands = (module.__name__,)

    task_lib.register(ToyTask())
    try:
        assert cli.main(["toy_command"]) == 0
        assert capsys.readouterr().out == "toy ran\n"
    finally:
        task_lib._REGISTERED.pop(ToyTask.name, None)
