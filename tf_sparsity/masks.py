"""Exact top-k mask computation with `keras.ops` (XLA-friendly on all backends).

The number of weights to prune changes during training, so it is a traced
value. `ops.top_k` needs a static k on JAX; a full sort followed by `ops.take`
at a traced index works but is slow on CPU, so the k-th smallest score is
found by a radix search over the scores' bit patterns instead: 32 counting
passes, exact, with a traced k.
"""

import math

import numpy as np
from keras import ops


def num_to_prune(sparsity, size):
    """Weights pruned when a tensor of `size` weights is at `sparsity`.

    Rounded half up in float64 (here, in Python), so the count is exact even
    for tensors far larger than float32 can count.
    """
    return int(math.floor(float(sparsity) * int(size) + 0.5))


_SIGN_BIT = -(2**31)


def _ordered_keys(values):
    """int32 keys that sort like the float32 `values` (bit pattern trick).

    Non-negative floats already order like their bit patterns; for negative
    ones the 31 low bits are flipped so larger magnitudes come first.
    """
    bits = ops.view(ops.cast(values, "float32"), "int32")
    negative_mask = ops.bitwise_and(ops.right_shift(bits, 31), 0x7FFFFFFF)
    return ops.bitwise_xor(bits, negative_mask)


def kth_smallest_key(keys, k):
    """The k-th smallest int32 key (1-based), by a 32-step radix search.

    Each step counts the keys at or below a candidate, so the cost is 32
    vectorized passes over the data, O(32 n), instead of a full O(n log n)
    sort (XLA's CPU sort took ~300 ms for a million floats here). The steps
    run in a loop rather than unrolled, which keeps compilation short for
    models with many kernels. Works with a traced `k` on every backend; for
    k = 0 returns the smallest int32.
    """
    k = ops.cast(k, "int32")

    def step(i, answer):
        # The answer is built in "biased" form (sign bit flipped, so that
        # unsigned order equals signed order), most significant bit first.
        bit_value = ops.left_shift(ops.ones((), "int32"), 31 - i)  # 1 << 31 wraps to the sign bit.
        low_bits = bit_value - 1
        candidate = ops.bitwise_xor(ops.bitwise_or(answer, low_bits), _SIGN_BIT)
        count = ops.sum(ops.cast(ops.less_equal(keys, candidate), "int32"))
        return ops.where(
            ops.greater_equal(count, k), answer, ops.bitwise_or(answer, bit_value)
        )

    answer = ops.fori_loop(0, 32, step, ops.zeros((), "int32"))
    return ops.bitwise_xor(answer, _SIGN_BIT)


def prune_lowest(scores, num_pruned):
    """A 0/1 mask that removes exactly the `num_pruned` lowest scores.

    Ties at the threshold are broken by position (earlier pruned first), so
    the count is exact and the result is deterministic across devices.

    Args:
        scores: float tensor of any shape.
        num_pruned: int scalar tensor, 0 <= num_pruned <= scores.size.

    Returns:
        A float32 tensor of `scores.shape`: 0 where pruned, 1 elsewhere.
    """
    keys = _ordered_keys(ops.reshape(scores, (-1,)))
    num_pruned = ops.cast(num_pruned, "int32")
    threshold = kth_smallest_key(keys, num_pruned)
    below = ops.less(keys, threshold)
    ties = ops.equal(keys, threshold)
    num_below = ops.sum(ops.cast(below, "int32"))
    tie_rank = ops.cumsum(ops.cast(ties, "int32")) - 1
    pruned_ties = ops.logical_and(ties, ops.less(tie_rank, num_pruned - num_below))
    keep = ops.logical_not(ops.logical_or(below, pruned_ties))
    return ops.reshape(ops.cast(keep, "float32"), ops.shape(scores))


def prune_lowest_jointly(scores_list, num_pruned):
    """Like `prune_lowest`, ranking several tensors together (global scope).

    Args:
        scores_list: list of float tensors.
        num_pruned: int scalar tensor, total number of weights to prune.

    Returns:
        A list of 0/1 masks shaped like `scores_list`.
    """
    flat = ops.concatenate(
        [ops.reshape(ops.cast(s, "float32"), (-1,)) for s in scores_list]
    )
    joint = prune_lowest(flat, num_pruned)
    masks, start = [], 0
    for scores in scores_list:
        size = int(math.prod(scores.shape))
        masks.append(ops.reshape(joint[start : start + size], ops.shape(scores)))
        start += size
    return masks


# A score above (or below) every real one: keeps a unit out of a selection.
OUTSIDE = float(np.finfo("float32").max)


def drop_lowest(active, drop_scores, num_moved):
    """The live units of a 0/1 mask left after dropping the `num_moved`
    of lowest `drop_scores` (a bool tensor; ties broken by position)."""
    active = ops.greater(ops.cast(active, "float32"), 0.5)
    drop_keys = ops.where(active, ops.cast(drop_scores, "float32"), OUTSIDE)
    return ops.logical_and(active, ops.greater(prune_lowest(drop_keys, num_moved), 0.5))


def drop_and_grow(active, drop_scores, grow_scores, num_moved):
    """Moves `num_moved` units of a 0/1 mask: the active ones of lowest
    `drop_scores` are dropped, then as many inactive ones of highest
    `grow_scores` are grown (just-dropped ones included, as in RigL's
    reference implementation). Exact counts, ties broken by position.

    Args:
        active: 0/1 tensor, the current mask over units.
        drop_scores: float tensor shaped like `active`.
        grow_scores: float tensor shaped like `active`.
        num_moved: int scalar tensor, at most the number of active units.

    Returns:
        `(new_mask, kept)`: float32 0/1 tensors; `kept` marks the active
        units that were not dropped (the only ones that keep their values).
    """
    after_drop = drop_lowest(active, drop_scores, num_moved)
    grow_keys = ops.where(after_drop, OUTSIDE, -ops.cast(grow_scores, "float32"))
    grown = ops.less(prune_lowest(grow_keys, num_moved), 0.5)
    return ops.cast(ops.logical_or(after_drop, grown), "float32"), ops.cast(after_drop, "float32")


@ops.custom_gradient
def _masked_gradient(kernel, mask):
    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return upstream * mask, ops.zeros_like(mask)

    return kernel, grad


@ops.custom_gradient
def _masked_gradient_with_probe(kernel, mask, probe):
    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return upstream * mask, ops.zeros_like(mask), ops.cast(upstream, probe.dtype)

    return kernel, grad


def masked_gradient(kernel, mask, probe=None):
    """`kernel` in the forward pass, `gradient * mask` in the backward pass.

    Equal in value and gradient to `kernel * mask` when the kernel is
    already zero wherever the mask is, without the forward multiply (a
    full pass over the kernel and the mask on every step). With `probe`,
    the dense gradient (masked positions included) flows to it unchanged.

    Args:
        kernel: the kernel tensor, zero where `mask` is.
        mask: its 0/1 mask, dtype of `kernel`.
        probe: optional tensor shaped like `kernel` that receives the dense
            gradient (its value is not used).
    """
    if probe is None:
        return _masked_gradient(kernel, mask)
    return _masked_gradient_with_probe(kernel, mask, probe)
