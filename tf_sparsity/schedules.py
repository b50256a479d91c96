"""Sparsity schedules: how much of each layer is pruned at a training step.

A schedule answers two questions for the mask updater, both in plain Python
(they are evaluated once per step by a callback, outside the compiled graph):
`sparsity(step)`, the target at that step, and `last_update_step(step)`, the
most recent step at or before `step` where masks are due to be recomputed.

`begin_step` and `end_step` mean the same in every schedule and method of
the library: the first and the last step at which the schedule changes
anything, both included. At `end_step` the final value is reached (the
final sparsity, a ramp's full weight, a drop fraction decayed to 0) and an
update happens there; no update happens after it. `end_step=None` means no
end.
"""

import keras

from tf_sparsity import _validation as validate
from tf_sparsity._config import ConfigObject

_PACKAGE = "tf_sparsity"


def _check_sparsity(name, value, owner):
    return validate.sparsity(owner, name, value)


def _check_step(name, value, owner, minimum=0):
    return validate.integer(owner, name, value, minimum=minimum)


class StepSchedule(ConfigObject):
    """Something updated on chosen training steps (masks, regularizer ramps).

    Subclasses implement `last_update_step(step)` and `get_config()`.
    """

    def last_update_step(self, step):
        """Latest step <= `step` at which masks are updated, or None."""
        raise NotImplementedError

    @property
    def final_update_step(self):
        """The step of the last update (`end_step`: the final value is
        reached there), or None when the schedule has no end. Training that
        stops before it leaves the schedule unfinished (the callback warns)."""
        return None

    def should_update(self, step):
        """Whether masks are recomputed right before training step `step`."""
        return self.last_update_step(int(step)) == int(step)

    def due_update(self, last_checked, step):
        """The update step in (`last_checked`, `step`], if any is due.

        With `steps_per_execution > 1` callbacks see only every N-th step; an
        update that fell inside the skipped steps is applied late rather than
        lost, so the final sparsity is still reached.
        """
        latest = self.last_update_step(int(step))
        if latest is None or latest <= last_checked:
            return None
        return latest


class SparsitySchedule(StepSchedule):
    """Base class of sparsity schedules.

    Subclasses implement `sparsity(step)`, `last_update_step(step)`,
    `final_sparsity` and `get_config()`.
    """

    @property
    def final_sparsity(self):
        raise NotImplementedError

    def sparsity(self, step):
        """Target sparsity (fraction of zeros) at `step`."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(SparsitySchedule):
    """Gradual pruning schedule of Zhu & Gupta (2017).

    `s_t = s_f + (s_i - s_f) * (1 - p) ** exponent` with
    `p = clip((t - begin_step) / (end_step - begin_step), 0, 1)`. Masks are
    updated at `begin_step`, every `frequency` steps after it, and always at
    `end_step` so that the final sparsity is reached exactly.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: last step at which masks are updated, where the final
            sparsity is reached (> `begin_step`).
        frequency: steps between mask updates (>= 1).
        exponent: the decay exponent (3 in the paper).
    """

    def __init__(
        self,
        initial_sparsity=0.0,
        final_sparsity=0.9,
        begin_step=0,
        end_step=10_000,
        frequency=100,
        exponent=3.0,
    ):
        owner = "PolynomialDecay"
        initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity, owner)
        final_sparsity = _check_sparsity("final_sparsity", final_sparsity, owner)
        begin_step = _check_step("begin_step", begin_step, owner)
        end_step = _check_step("end_step", end_step, owner)
        frequency = _check_step("frequency", frequency, owner, minimum=1)
        exponent = validate.number(owner, "exponent", exponent, above=0)
        if initial_sparsity > final_sparsity:
            raise ValueError(
                f"{owner}: `initial_sparsity` ({initial_sparsity}) is above "
                f"`final_sparsity` ({final_sparsity}); masks are permanent, "
                "so sparsity can only grow (are the arguments swapped?)."
            )
        if end_step <= begin_step:
            raise ValueError(
                f"{owner}: `end_step` ({end_step}) must be greater than "
                f"`begin_step` ({begin_step})."
            )
        self.initial_sparsity = float(initial_sparsity)
        self._final_sparsity = float(final_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self.exponent = float(exponent)

    @property
    def final_sparsity(self):
        return self._final_sparsity

    @property
    def final_update_step(self):
        return self.end_step

    def sparsity(self, step):
        span = self.end_step - self.begin_step
        progress = min(max((step - self.begin_step) / span, 0.0), 1.0)
        return self._final_sparsity + (
            self.initial_sparsity - self._final_sparsity
        ) * (1.0 - progress) ** self.exponent

    def last_update_step(self, step):
        if step < self.begin_step:
            return None
        if step >= self.end_step:
            return self.end_step
        periods = (step - self.begin_step) // self.frequency
        return self.begin_step + periods * self.frequency

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self._final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
            "exponent": self.exponent,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(SparsitySchedule):
    """A fixed target, re-applied every `frequency` steps.

    Updates happen at `begin_step`, every `frequency` steps after it, and
    at `end_step` (the last update; none after it).

    Args:
        sparsity: the target, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: last step at which masks are updated (>= `begin_step`),
            or None (or -1, tfmot's spelling) for no end.
        frequency: steps between mask updates (>= 1).
    """

    def __init__(self, sparsity, begin_step=0, end_step=None, frequency=100):
        owner = "ConstantSparsity"
        sparsity = _check_sparsity("sparsity", sparsity, owner)
        begin_step = _check_step("begin_step", begin_step, owner)
        if end_step is not None:
            end_step = _check_step("end_step", end_step, owner, minimum=-1)
            end_step = None if end_step == -1 else end_step
        frequency = _check_step("frequency", frequency, owner, minimum=1)
        if end_step is not None and end_step < begin_step:
            raise ValueError(
                f"{owner}: `end_step` ({end_step}) must not come before "
                f"`begin_step` ({begin_step}); None means no end."
            )
        self.target = float(sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    @property
    def final_sparsity(self):
        return self.target

    @property
    def final_update_step(self):
        return self.end_step

    def sparsity(self, step):
        return self.target

    def last_update_step(self, step):
        if step < self.begin_step:
            return None
        if self.end_step is not None and step >= self.end_step:
            return self.end_step
        periods = (step - self.begin_step) // self.frequency
        return self.begin_step + periods * self.frequency

    def get_config(self):
        return {
            "sparsity": self.target,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OneShot(SparsitySchedule):
    """Prunes once, to `sparsity`, right before training step `step` (its
    `begin_step` and `end_step` both).

    Args:
        sparsity: the target, in [0, 1).
        step: the step at which the single mask update happens.
    """

    def __init__(self, sparsity, step=0):
        sparsity = _check_sparsity("sparsity", sparsity, "OneShot")
        step = _check_step("step", step, "OneShot")
        self.target = float(sparsity)
        self.step = step

    @property
    def final_sparsity(self):
        return self.target

    @property
    def final_update_step(self):
        return self.step

    def sparsity(self, step):
        return self.target if step >= self.step else 0.0

    def last_update_step(self, step):
        return self.step if step >= self.step else None

    def get_config(self):
        return {"sparsity": self.target, "step": self.step}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Ramp(StepSchedule):
    """A regularizer weight ramped from 0 to 1 between two steps.

    "linear": `p = clip((t - begin) / (end - begin), 0, 1)`. "cubic":
    `1 - (1 - p) ** 3`, the shape the paper's reference Transformer used for
    its KL weight (it also smoothed the value with a 0.9 moving average,
    which changes it by less than 10 steps' worth and is omitted here).
    `end_step <= begin_step` means no ramp (full weight from step 0). The
    value is refreshed `updates` times over the ramp, not every step.

    Args:
        begin_step: step where the weight starts rising from 0.
        end_step: step where it reaches 1 (the last update).
        shape: "linear" or "cubic".
        updates: how many times the value is refreshed during the ramp.
    """

    def __init__(self, begin_step=0, end_step=0, shape="linear", updates=200):
        owner = "Ramp"
        begin_step = _check_step("begin_step", begin_step, owner)
        end_step = _check_step("end_step", end_step, owner)
        updates = _check_step("updates", updates, owner, minimum=1)
        if shape not in ("linear", "cubic"):
            raise ValueError(f"{owner}: `shape` must be 'linear' or 'cubic', got {shape!r}.")
        if end_step < begin_step:
            raise ValueError(
                f"{owner}: `end_step` ({end_step}) must not come before "
                f"`begin_step` ({begin_step}); equal steps mean no ramp."
            )
        self.begin_step = begin_step
        self.end_step = end_step
        self.shape = shape
        self.updates = updates

    @property
    def active(self):
        return self.end_step > self.begin_step

    @property
    def final_update_step(self):
        return self.end_step if self.active else None

    def value(self, step):
        if not self.active:
            return 1.0
        progress = min(max((step - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)
        if self.shape == "cubic":
            return 1.0 - (1.0 - progress) ** 3
        return progress

    def last_update_step(self, step):
        if not self.active or step < self.begin_step:
            return None
        if step >= self.end_step:
            return self.end_step
        frequency = max((self.end_step - self.begin_step) // self.updates, 1)
        return self.begin_step + (step - self.begin_step) // frequency * frequency

    def get_config(self):
        return {
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "shape": self.shape,
            "updates": self.updates,
        }


def get(identifier):
    """Returns a schedule from an instance or a serialized config."""
    if isinstance(identifier, StepSchedule):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise TypeError(
        "Expected a sparsity schedule such as tfs.PolynomialDecay(...), got "
        f"{identifier!r}."
    )
