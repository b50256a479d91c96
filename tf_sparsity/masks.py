"""Exact top-k mask computation with `keras.ops` (XLA-friendly on all backends).

The number of weights to prune changes during training, so it is a traced
value. `ops.top_k` needs a static k on JAX; a full sort followed by `ops.take`
at a traced index does not (XLA sorts fully for top_k anyway).
"""

import math

from keras import ops


def num_to_prune(sparsity, size):
    """Weights pruned when a tensor of `size` weights is at `sparsity`.

    Rounded half up in float64 (here, in Python), so the count is exact even
    for tensors far larger than float32 can count.
    """
    return int(math.floor(float(sparsity) * int(size) + 0.5))


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
    flat = ops.reshape(ops.cast(scores, "float32"), (-1,))
    num_pruned = ops.cast(num_pruned, "int32")
    ordered = ops.sort(flat)
    threshold = ops.take(ordered, ops.maximum(num_pruned - 1, 0))
    below = ops.less(flat, threshold)
    ties = ops.equal(flat, threshold)
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
