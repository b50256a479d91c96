"""argparse types of the `tf-sparsity` subcommands' flags.

A bad value becomes argparse's usual one-line error (exit code 2).
"""

import argparse
import re

# `tfs.structures.parse`'s spellings, checked without importing Keras.
_STRUCTURE = re.compile(r"unstructured|units|heads|\d+x\d+|\d+:\d+")


def fraction(text):
    """argparse type: a sparsity in [0, 1)."""
    value = _parse(float, text, "a number")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_int(text):
    """argparse type: an int >= 1."""
    value = _parse(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0."""
    value = _parse(float, text, "a number")
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def structure(text):
    """argparse type: a structure's spelling (`unstructured`, `units`,
    `heads`, a block `RxC` or `N:M`), checked by its form only; the values
    are checked when the structure is built."""
    if not _STRUCTURE.fullmatch(str(text).strip().lower()):
        raise argparse.ArgumentTypeError(
            f"bad structure {text!r}: expected unstructured, units, heads, a block "
            "RxC (e.g. 1x4) or N:M (e.g. 2:4)"
        )
    return text


def _parse(kind, text, what):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
