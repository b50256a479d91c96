"""Finding the setting that gives the sparsity you want.

Variational dropout and L0 regularization have no sparsity target: their
regularizer weight (and VD's log-alpha threshold) decide how sparse the
model ends up, as the paper's sweeps show. These helpers sweep those knobs
and report sparsity/metric pairs, then pick a row for a target.
"""

import dataclasses

from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity.sparsify import sparse_kernels
from tf_sparsity import summary as summary_lib
from tf_sparsity.methods import variational_dropout as vd_lib


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One setting of a sweep: the knob's value, sparsity reached, metric."""

    setting: float
    global_sparsity: float
    metric: float


def sweep_threshold(model, evaluate, thresholds=(0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)):
    """Evaluates a trained VD model at several log-alpha thresholds.

    The model's threshold is restored afterwards.

    Args:
        model: a model sparsified with `tfs.VariationalDropout`, trained.
        evaluate: `fn(model) -> float`, e.g. test accuracy.
        thresholds: values to try.

    Returns:
        List of `SweepRow`, one per threshold.
    """
    original = set_threshold(model, thresholds[0])
    rows = []
    try:
        for threshold in thresholds:
            set_threshold(model, threshold)
            report = summary_lib.sparsity_summary(model, print_fn=None)
            rows.append(SweepRow(float(threshold), report.global_sparsity, float(evaluate(model))))
    finally:
        set_threshold(model, original)
    return rows


def sweep_weight(train, evaluate, weights):
    """Trains once per regularizer weight and reports sparsity and metric.

    Args:
        train: `fn(weight) -> model`, building and training a model with
            that `kl_weight` / `l0_weight`.
        evaluate: `fn(model) -> float`.
        weights: the weights to try (e.g. `[0.01/N, 0.1/N, 1/N]`).

    Returns:
        List of `SweepRow`, one per weight.
    """
    rows = []
    for weight in weights:
        model = train(weight)
        report = summary_lib.sparsity_summary(model, print_fn=None)
        rows.append(SweepRow(float(weight), report.global_sparsity, float(evaluate(model))))
    return rows


def choose(rows, target_sparsity):
    """The row with the best metric among those at least `target_sparsity` sparse.

    Raises:
        ValueError: no row reaches the target (the message lists the best).
    """
    reaching = [row for row in rows if row.global_sparsity >= target_sparsity]
    if not reaching:
        best = max(rows, key=lambda row: row.global_sparsity)
        raise ValueError(
            f"No setting reached sparsity {target_sparsity}; the sparsest was "
            f"{best.setting!r} at {best.global_sparsity:.4f}. Try larger "
            "regularizer weights or a lower threshold."
        )
    return max(reaching, key=lambda row: row.metric)


def format_rows(rows, name="setting"):
    """A small text table of sweep rows."""
    lines = [f"{name:>12}  {'sparsity':>9}  {'metric':>8}"]
    lines += [f"{r.setting:>12.4g}  {r.global_sparsity:>9.2%}  {r.metric:>8.4f}" for r in rows]
    return "\n".join(lines)


def set_threshold(model, threshold):
    """Re-evaluates a trained VD model at another log-alpha threshold.

    No retraining or retracing: the threshold is a variable of each layer.
    The paper swept thresholds from 0 to 5.

    Args:
        model: a model sparsified with `VariationalDropout`.
        threshold: the new threshold (finite float).

    Returns:
        The previous threshold of the first VD layer.
    """
    threshold = validate.number("set_threshold", "threshold", threshold)
    previous = None
    for kernel in sparse_kernels(model):
        if not isinstance(kernel.method, vd_lib.VariationalDropout):
            continue
        if previous is None:
            previous = float(ops.convert_to_numpy(kernel.state.threshold))
        kernel.state.threshold.assign(float(threshold))
    if previous is None:
        raise ValueError(f"Model '{model.name}' has no VariationalDropout layer.")
    return previous
