"""Perplexity of a causal language model over windows of token ids."""

import numpy as np
from keras import ops


def model_inputs(model, token_ids):
    """What `model` takes for a batch of token ids: a keras-hub
    `{"token_ids", "padding_mask"}` dict, or the ids themselves."""
    expected = getattr(model, "input", None)
    if isinstance(expected, dict) and "token_ids" in expected:
        return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}
    return token_ids


def perplexity(model, windows, batch_size=8):
    """exp of the mean next-token negative log-likelihood over every
    predicted token of `windows` (int array (num_windows, length)); the
    first token of each window is context only, as in the reference code.
    """
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        logits = model(model_inputs(model, batch[:, :-1]), training=False)
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        targets = ops.convert_to_tensor(batch[:, 1:, None].astype("int32"))
        picked = ops.take_along_axis(log_probs, targets, axis=-1)
        total -= float(ops.convert_to_numpy(ops.sum(picked)))
        count += int(np.prod(batch[:, 1:].shape))
    return float(np.exp(total / count))


def context_length(model, default=2048):
    """The longest sequence the model's backbone takes (capped at
    `default`, the papers' 2048)."""
    backbone = getattr(model, "backbone", model)
    length = getattr(backbone, "max_sequence_length", None)
    return min(int(length), default) if length else default

