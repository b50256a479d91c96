"""Argument checks shared by schedules, methods and entry points.

Each check names the owner and the argument, accepts NumPy scalars as well
as Python numbers, and returns the value as a plain Python type.
"""

import math
import numbers
import random


def number(owner, name, value, minimum=None, maximum=None, above=None):
    """A finite real number (bools excluded), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be a number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be finite, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: `{name}` must be >= {minimum}, got {value!r}.")
    if above is not None and value <= above:
        raise ValueError(f"{owner}: `{name}` must be > {above}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}: `{name}` must be <= {maximum}, got {value!r}.")
    return value


def integer(owner, name, value, minimum=None):
    """An integer (bools excluded), as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int, got {value!r}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: `{name}` must be >= {minimum}, got {value}.")
    return value


def sparsity(owner, name, value):
    """A sparsity in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: `{name}` must be a number in [0, 1), got {value!r}."
        )
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{owner}: `{name}` must be in [0, 1) (1.0 would remove every "
            f"weight), got {value!r}."
        )
    return value


def boolean(owner, name, value):
    """A bool (NumPy bools too); strings such as "no" are refused."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"{owner}: `{name}` must be True or False, got {value!r}.")
    return bool(value)


def seed(owner, value):
    """A seed: None (pick one) or a non-negative int."""
    if value is None:
        return None
    return integer(owner, "seed", value, minimum=0)


def seed_or_draw(owner, value):
    """A seed as `seed` checks it, or, for None, one drawn from the system's
    entropy (methods record it in their config, so runs can be repeated)."""
    value = seed(owner, value)
    if value is None:
        value = random.SystemRandom().randrange(2**31)
    return value


def choice(owner, name, value, choices):
    if value not in choices:
        raise ValueError(
            f"{owner}: `{name}` must be one of {', '.join(map(repr, choices))}, "
            f"got {value!r}."
        )
    return value
