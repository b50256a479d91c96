"""The interface of a reference task, and the task registry.

A task is what `tf-sparsity train --task NAME` trains: its config class and
presets, its data, model, compilation, evaluation metrics and export. The
shared runner (`runner.py`) does the rest (strategy, precision, sparsify,
callbacks, resume, evaluation, saving, result row). Adding a task is one new
folder with a module defining a `Task` and one line in `TASKS` below (or a
call to `register` for a task of your own). A task may also add its own
`tf-sparsity` subcommands (the Transformer's `translate`): one line in
`COMMANDS`.

This module imports neither Keras nor TensorFlow: the `tf-sparsity` command
lists the tasks and their subcommands for every command, `report` included.
"""

import dataclasses
import importlib

from tf_sparsity_models.common import config as config_lib


class Task:
    """Base class of reference tasks; subclasses set the attributes and
    override the methods marked as required.

    Attributes:
        name: the task's name (`--task`).
        config_class: its `RunConfig` subclass.
        presets: `{name: {field: value}}` for `--config`.
        main_metric: the metric the task is judged on (a key of `metrics`).
        commands: for a task added with `register`, the modules adding its
            own `tf-sparsity` subcommands, each with an
            `add_parser(subparsers)` (the built-in tasks list theirs in
            `COMMANDS`).
        outputs: names of the files the task writes into the model
            directory itself (a vocabulary), deleted with the run's by
            `--overwrite`.
    """

    name = None
    config_class = config_lib.RunConfig
    presets = {}
    main_metric = None
    commands = ()
    outputs = ()

    def resolve(self, config):
        """Task checks and task defaults for `config` (already field-checked);
        returns the resolved config."""
        return config

    def stretch(self, config, factor):
        """`config` trained `factor` times longer (the scratch_b variant):
        steps here; a task stretches its step-counted schedules too."""
        steps = round(config.steps * factor)
        steps -= steps % config.steps_per_execution
        return dataclasses.replace(config, steps=steps)

    def load_data(self, config, model_dir):
        """Required: the task's data; an object with an `info` attribute
        holding at least `name` and `train_examples`. `model_dir` is the
        run's directory, for artefacts the data needs (a vocabulary)."""
        raise NotImplementedError

    def build_model(self, config, data):
        """Required: the dense Keras model (called in the strategy scope)."""
        raise NotImplementedError

    def distribution(self, config):
        """The `tfs` sparsity distribution of the run (None: uniform)."""
        return None

    def compile(self, model, config, data):
        """Required: compiles `model` (optimizer, loss, metrics)."""
        raise NotImplementedError

    def train_dataset(self, strategy, config, data, resumed_epoch):
        """Required: the distributed training dataset, resumed after
        `resumed_epoch` Keras epochs (`resumed_epoch * config.checkpoint_every`
        steps). With `config.deterministic` it must yield what an
        uninterrupted run's dataset yields from that step on (the same seed,
        the steps done skipped: `tfds_data.skip_steps`); otherwise it may
        reshuffle instead."""
        raise NotImplementedError

    def eval_dataset(self, strategy, config, data):
        """`(distributed dataset, steps)` for evaluation, or `(None, None)`."""
        return None, None

    def evaluate_more(self, model, config, data, print_fn=print):
        """Evaluation beyond `model.evaluate` (e.g. BLEU of decoded
        translations), run on every worker after training: `{name: value}`
        merged into the results `metrics` and `row_extras` read."""
        return {}

    def metrics(self, results):
        """`{name: value}` of the run's row from `model.evaluate` results
        (None values where not evaluated); must hold `main_metric`."""
        return {self.main_metric: results.get(self.main_metric)}

    def row_extras(self, results):
        """Further JSON-friendly row fields taken from the results."""
        return {}

    def export(self, model, export_dir, config, data):
        """Writes the serving SavedModel (default: `tfs.export_saved_model`)."""
        # Keras loads with the run, not with this module (see its docstring).
        import tf_sparsity as tfs

        tfs.export_saved_model(model, export_dir, overwrite=True)


def resumed_data(config, resumed_epoch):
    """`(shuffle_seed, skip_steps)` of a training pipeline resumed after
    `resumed_epoch` Keras epochs.

    With `config.deterministic`: the run's seed, and the steps done to skip
    (the pipeline replays them, which costs their input time once, so the
    resumed run trains on what an uninterrupted one would). Otherwise a new
    seed and nothing skipped: a cheap restart on another order of examples.
    """
    if config.deterministic:
        return config.seed, resumed_epoch * config.checkpoint_every
    return config.seed + resumed_epoch, 0


#: Task name -> "module:attribute" of its `Task` instance.
TASKS = {
    "resnet50": "tf_sparsity_models.resnet50.task:TASK",
    "transformer": "tf_sparsity_models.transformer.task:TASK",
}

#: Task name -> the modules adding the task's own `tf-sparsity`
#: subcommands, each with an `add_parser(subparsers)`; listed here so that
#: building the command's parser imports no task.
COMMANDS = {
    "transformer": ("tf_sparsity_models.transformer.cli",),
}

#: Task name -> (module, config class, presets) of its config, which
#: imports neither Keras nor TensorFlow: `sweep` checks a grid against it
#: before anything runs. A task not listed here is imported instead.
CONFIGS = {
    "resnet50": ("tf_sparsity_models.resnet50.configs", "ResNet50Config", "PRESETS"),
    "transformer": ("tf_sparsity_models.transformer.configs", "TransformerConfig", "PRESETS"),
}

_REGISTERED = {}


def register(task):
    """Adds a task of your own (an instance of a `Task` subclass)."""
    if not isinstance(task, Task) or not task.name:
        raise TypeError(f"register expects a named Task instance, got {task!r}")
    _REGISTERED[task.name] = task
    return task


def names():
    return sorted({*TASKS, *_REGISTERED})


def command_modules():
    """The modules adding the tasks' own `tf-sparsity` subcommands, each
    with an `add_parser(subparsers)`, in task order (imports no task)."""
    modules = []
    for name in names():
        task = _REGISTERED.get(name)
        for module in task.commands if task is not None else COMMANDS.get(name, ()):
            if module not in modules:
                modules.append(module)
    return modules


def config_spec(name):
    """`(config_class, presets)` of the task `name`, importing only its
    config module when it is listed in `CONFIGS`.

    Raises:
        ValueError: unknown task, or one whose extra is not installed.
    """
    if name in _REGISTERED or name not in CONFIGS:
        task = get(name)
        return task.config_class, task.presets
    module, config_class, presets = CONFIGS[name]
    loaded = importlib.import_module(module)
    return getattr(loaded, config_class), getattr(loaded, presets)


def get(name):
    """The registered task `name`.

    Raises:
        ValueError: unknown task, or one whose extra is not installed.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(names())})")
    module, attribute = TASKS[name].split(":")
    try:
        loaded = importlib.import_module(module)
    except ImportError as error:
        raise ValueError(
            f"task {name!r} needs {error.name or 'a module'} that is not installed: "
            f'pip install "tf_sparsity[{name}]"'
        ) from None
    return getattr(loaded, attribute)
