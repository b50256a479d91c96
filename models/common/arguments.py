"""argparse types of the `tf-sparsity` subcommands' flags.

A bad value becomes argparse's usual one-line error (exit code 2).
"""

import argparse


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


def _parse(kind, text, what):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
