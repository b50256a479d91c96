"""tfmot's pruning schedules (`tfmot.sparsity.keras.PruningSchedule`,
`ConstantSparsity`, `PolynomialDecay`) as tf_sparsity schedules.

tfmot asks a schedule about its *pruning step*, a counter each pruning
wrapper keeps: `UpdatePruningStep` sets it to 0 when training starts and the
wrapper adds 1 before every training step, so the training step that
`optimizer.iterations` numbers `i` (0 for the first) runs at pruning step
`i + 1`. tf_sparsity asks a schedule about `i` itself. These classes answer
tf_sparsity's questions (`sparsity(i)`, `should_update(i)`,
`last_update_step(i)`) with tfmot's answers at pruning step `i + 1`, so masks
change on the same training steps as under tfmot, to the same float32
sparsity.
"""

import abc
import numbers

import keras
import numpy as np

from tf_sparsity.schedules import SparsitySchedule

PACKAGE = "tf_sparsity.compat.tfmot"

# A pruning step far past any training run: where a schedule without
# `final_sparsity` is asked for its final value.
_LAST_PRUNING_STEP = 2**31 - 1


def pruning_step(step):
    """tfmot's pruning step of the training step `step`
    (`optimizer.iterations` before it runs)."""
    return int(step) + 1


def _as_bool(value):
    return bool(np.asarray(value))


def _as_float32(value):
    return np.float32(np.asarray(value))


class PruningSchedule(SparsitySchedule, metaclass=abc.ABCMeta):
    """Base of pruning schedules, as tfmot's `PruningSchedule`.

    A subclass implements tfmot's interface: `__call__(step)` returns
    `(should_prune, sparsity)` for a pruning step (use
    `self._should_prune_in_step(step, begin_step, end_step, frequency)` for
    the first), and `get_config()` returns
    `{"class_name": ..., "config": {...constructor arguments}}`. Its answers
    may be Python values, NumPy values or TensorFlow tensors. Set
    `self.final_sparsity` in the constructor when the schedule has no
    `end_step` at which its last sparsity can be read.

    The tf_sparsity side (`sparsity`, `should_update`, `due_update`,
    `last_update_step`, `final_sparsity`) is provided: it calls the schedule
    at the pruning step of each training step (see the module docstring).

    Example:

    ```python
    class Steps(tfmot.sparsity.keras.PruningSchedule):
        def __init__(self, begin_step, end_step):
            self.begin_step, self.end_step = begin_step, end_step
            self.final_sparsity = 0.8

        def __call__(self, step):
            sparsity = 0.5 if step < self.end_step else 0.8
            return (self._should_prune_in_step(step, self.begin_step,
                                               self.end_step, 10), sparsity)

        def get_config(self):
            return {"class_name": "Steps", "config": {
                "begin_step": self.begin_step, "end_step": self.end_step}}
    ```
    """

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        """Whether tfmot prunes at pruning step `step`: in
        [`begin_step`, `end_step`] (no end when `end_step` is negative) and
        `(step - begin_step) % frequency == 0`.

        Args:
            step: the pruning step (a Python int, or a tensor).
            begin_step: the first pruning step that can prune.
            end_step: the last one, or -1 for no end.
            frequency: pruning steps between two prunings.

        Returns:
            A bool (a boolean tensor when `step` is a tensor).
        """
        if isinstance(step, numbers.Integral):
            in_range = step >= begin_step and (step <= end_step or end_step < 0)
            return in_range and (step - begin_step) % frequency == 0
        import tensorflow as tf  # A tensor step comes from TensorFlow code.

        in_range = tf.math.logical_and(
            tf.math.greater_equal(step, begin_step),
            tf.math.logical_or(tf.math.less_equal(step, end_step), tf.math.less(end_step, 0)),
        )
        turn = tf.math.equal(tf.math.floormod(tf.math.subtract(step, begin_step), frequency), 0)
        return tf.math.logical_and(in_range, turn)

    def _validate_step(self, begin_step, end_step, frequency, allow_negative_1):
        """Raises ValueError for steps tfmot refuses (its messages).

        Args:
            begin_step: the first pruning step.
            end_step: the last one; -1 (no end) only if `allow_negative_1`.
            frequency: pruning steps between prunings.
            allow_negative_1: whether `end_step=-1` is accepted.
        """
        if begin_step < 0:
            raise ValueError("begin_step should be >= 0")
        if not allow_negative_1 and end_step == -1:
            raise ValueError("end_step cannot be -1.")
        if end_step != -1:
            if end_step < 0:
                raise ValueError("end_step can be -1 or >= 0")
            if end_step < begin_step:
                raise ValueError("begin_step should be <= end_step if end_step != -1")
        if frequency <= 0:
            raise ValueError("frequency should be > 0")

    def _validate_sparsity(self, sparsity, variable_name):
        """Raises ValueError unless `sparsity` is in [0, 1) (tfmot's message)."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"{variable_name} must be in range [0,1)")

    @abc.abstractmethod
    def __call__(self, step):
        """Returns `(should_prune, sparsity)` at pruning step `step`."""

    @abc.abstractmethod
    def get_config(self):
        """Returns `{"class_name": ..., "config": {...}}`, as tfmot's schedules."""

    @classmethod
    def from_config(cls, config):
        """Builds the schedule from `get_config()`'s result, or from the
        inner `config` dict alone."""
        if set(config) == {"class_name", "config"}:
            config = config["config"]
        return cls(**config)

    def __repr__(self):
        config = self.get_config()
        arguments = config.get("config", config) if isinstance(config, dict) else {}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"

    # The tf_sparsity side: training steps (`optimizer.iterations`).

    @property
    def final_sparsity(self):
        """The sparsity the schedule ends at: the `final_sparsity` set by the
        constructor, else `target_sparsity`, else the schedule's value at its
        `end_step` (or far past any training run when it has none)."""
        value = self.__dict__.get("_final_sparsity_value")
        if value is None:
            value = getattr(self, "target_sparsity", None)
        if value is not None:
            return value
        end = getattr(self, "end_step", None)
        probe = end if isinstance(end, numbers.Integral) and end >= 0 else _LAST_PRUNING_STEP
        try:
            value = float(_as_float32(self(probe)[1]))
        except Exception as error:  # User code may raise anything here.
            raise ValueError(
                f"{type(self).__name__}: tf_sparsity needs the sparsity this "
                f"schedule ends at, and calling it at pruning step {probe} "
                f"failed ({type(error).__name__}: {error}); set "
                "`self.final_sparsity = ...` in its constructor."
            ) from error
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"{type(self).__name__}: at pruning step {probe} it returns sparsity "
                f"{value!r}, outside [0, 1); set `self.final_sparsity = ...` in its "
                "constructor."
            )
        return value

    @final_sparsity.setter
    def final_sparsity(self, value):
        self.__dict__["_final_sparsity_value"] = value

    def sparsity(self, step):
        """The float32 sparsity tfmot computes for training step `step`."""
        return float(_as_float32(self(pruning_step(step))[1]))

    def should_update(self, step):
        """Whether tfmot recomputes masks at training step `step`."""
        return _as_bool(self(pruning_step(step))[0])

    def due_update(self, last_checked, step):
        """The latest training step in (`last_checked`, `step`] at which the
        masks are recomputed, or None (one call per step checked)."""
        for candidate in range(int(step), int(last_checked), -1):
            if candidate >= 0 and self.should_update(candidate):
                return candidate
        return None

    def last_update_step(self, step):
        """The latest training step <= `step` with a mask update, or None.

        Found by asking the schedule about every step back to 0; the
        built-in schedules answer in closed form.
        """
        return self.due_update(-1, step)


def _last_turn(step, begin_step, end_step, frequency):
    """The latest pruning step <= `step` at which `_should_prune_in_step`
    holds, or None."""
    if step < begin_step:
        return None
    if 0 <= end_step < step:
        step = end_step
    return begin_step + (step - begin_step) // frequency * frequency


def _training_step(turn):
    """The training step of pruning step `turn`, or None when `turn` is 0
    (pruning steps start at 1, so tfmot never prunes at 0)."""
    return None if turn is None or turn < 1 else turn - 1


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConstantSparsity(PruningSchedule):
    """Prunes to a constant sparsity every `frequency` steps, as tfmot's
    `ConstantSparsity`.

    Masks are recomputed at pruning steps `begin_step`, `begin_step +
    frequency`, ... up to `end_step` (both included; -1: no end). Pruning
    steps count from 1 at the first training step, so with `begin_step=0`
    the first update is at pruning step `frequency` (training step
    `frequency - 1`), as in tfmot.

    Args:
        target_sparsity: the sparsity, in [0, 1).
        begin_step: the first pruning step that can prune.
        end_step: the last one, or -1 for no end.
        frequency: pruning steps between two mask updates.
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = target_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(self.begin_step, self.end_step, self.frequency, True)
        self._validate_sparsity(target_sparsity, "target_sparsity")

    def __call__(self, step):
        return (
            self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
            np.float32(self.target_sparsity),
        )

    def get_config(self):
        return {
            "class_name": type(self).__name__,
            "config": {
                "target_sparsity": self.target_sparsity,
                "begin_step": self.begin_step,
                "end_step": self.end_step,
                "frequency": self.frequency,
            },
        }

    def last_update_step(self, step):
        turn = _last_turn(pruning_step(step), self.begin_step, self.end_step, self.frequency)
        return _training_step(turn)

    @property
    def final_update_step(self):
        if self.end_step < 0:
            return None
        return _training_step(
            _last_turn(self.end_step, self.begin_step, self.end_step, self.frequency)
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class PolynomialDecay(PruningSchedule):
    """Sparsity rising along a polynomial, as tfmot's `PolynomialDecay`.

    `sparsity = final_sparsity + (initial_sparsity - final_sparsity) *
    (1 - p) ** power` with `p = clip((step - begin_step) / (end_step -
    begin_step), 0, 1)`, in float32 as tfmot computes it. Masks are
    recomputed at pruning steps `begin_step`, `begin_step + frequency`, ...
    up to `end_step`; unlike `tfs.PolynomialDecay`, there is no update at
    `end_step` unless it falls on that grid, so the last sparsity reached can
    be a little below `final_sparsity` (as in tfmot).

    Args:
        initial_sparsity: sparsity at `begin_step`.
        final_sparsity: sparsity at `end_step`.
        begin_step: the first pruning step that can prune.
        end_step: the last one.
        power: the exponent (tfmot's default 3).
        frequency: pruning steps between two mask updates (default 100).
    """

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100
    ):
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = power
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(self.begin_step, self.end_step, self.frequency, False)
        self._validate_sparsity(initial_sparsity, "initial_sparsity")
        self._validate_sparsity(final_sparsity, "final_sparsity")

    def __call__(self, step):
        step = int(step)
        # The operations and float32 roundings of tfmot's TensorFlow graph.
        with np.errstate(divide="ignore", invalid="ignore"):
            progress = np.float32(step - self.begin_step) / np.float32(
                self.end_step - self.begin_step
            )
        progress = np.minimum(np.float32(1.0), np.maximum(np.float32(0.0), progress))
        decay = np.power(np.float32(1.0) - progress, np.float32(self.power))
        sparsity = np.float32(self.initial_sparsity - self.final_sparsity) * decay + np.float32(
            self.final_sparsity
        )
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        return should_prune, np.float32(sparsity)

    def get_config(self):
        return {
            "class_name": type(self).__name__,
            "config": {
                "initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity,
                "power": self.power,
                "begin_step": self.begin_step,
                "end_step": self.end_step,
                "frequency": self.frequency,
            },
        }

    def last_update_step(self, step):
        turn = _last_turn(pruning_step(step), self.begin_step, self.end_step, self.frequency)
        return _training_step(turn)

    @property
    def final_update_step(self):
        return _training_step(
            _last_turn(self.end_step, self.begin_step, self.end_step, self.frequency)
        )
