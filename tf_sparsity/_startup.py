"""Which `tf-sparsity` commands run without Keras.

`tf-sparsity report` and `tf-sparsity sweep` only read and write JSON, text
and plots (a sweep runs its trainings as subprocesses), so they skip loading
Keras and TensorFlow, which costs seconds. Everything else imports the full
API, so that `import tf_sparsity` registers its layers for `keras.saving`.
"""

import os

LIGHT_COMMANDS = ("report", "sweep")
_ENTRY_POINTS = ("tf-sparsity", "tf-sparsity.exe", "tf-sparsity-script.py")
_CLI_MODULES = ("tf_sparsity.cli",)


def light_command(argv, orig_argv=()):
    """Returns the subcommand when this process is a Keras-free command.

    Args:
        argv: `sys.argv` of the process.
        orig_argv: `sys.orig_argv` (the interpreter's own command line), used
            for `python -m tf_sparsity.cli ...`, where `argv[0]` is `"-m"`
            while packages are imported.

    Returns:
        `"report"` or `"sweep"`, or `None` (load everything).
    """
    argv = list(argv)
    if argv and os.path.basename(argv[0]) in _ENTRY_POINTS:
        command = argv[1:2]
    elif argv[:1] == ["-m"]:
        orig_argv = list(orig_argv)
        index = orig_argv.index("-m") if "-m" in orig_argv else -1
        module = orig_argv[index + 1 : index + 2]
        command = orig_argv[index + 2 : index + 3] if module and module[0] in _CLI_MODULES else []
    else:
        return None
    return command[0] if command and command[0] in LIGHT_COMMANDS else None
