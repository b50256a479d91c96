"""Greedy and beam-search decoding of a `Transformer`, batched and cached.

Both are `keras.ops` loops (`ops.while_loop`) over fixed-size key/value
caches, so they run inside `tf.function(jit_compile=True)` and inside an
exported SavedModel. Beam search is tensor2tensor's: each step keeps the
`2 * beam_size` best continuations, the best `beam_size` that did not end
are the live beams and those that ended compete for the finished slots,
scored with the GNMT length penalty `((5 + length) / 6) ** alpha`; it stops
when no live beam can beat the best finished one. keras-hub's `BeamSampler`
has no length penalty or finished-beam bookkeeping, hence this module.

Outputs are `(batch, max_length)` token ids: each translation, its `EOS_ID`
when it ended, then `PAD_ID`s.
"""

from keras import ops

from tf_sparsity_models.transformer.model import EOS_ID
from tf_sparsity_models.transformer.model import PAD_ID

NEG_INF = -1e9


def length_penalty(length, alpha):
    """GNMT's length penalty, `((5 + length) / 6) ** alpha`."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def _start(model, source, max_length, repeat=1):
    """Encodes `source` (each row `repeat` times) and runs the first step."""
    encoded, source_mask = model.encode(source)
    if repeat > 1:
        encoded = ops.repeat(encoded, repeat, axis=0)
        source_mask = ops.repeat(source_mask, repeat, axis=0)
    rows = ops.shape(encoded)[0]
    self_cache, cross_cache = model.empty_caches(rows, max_length, ops.shape(source)[1])
    first = ops.zeros((rows, 1), "int32") + PAD_ID
    logits, self_cache, cross_cache = model.decode_step(
        first, 0, encoded, source_mask, self_cache, cross_cache, fill_cross=True
    )
    return encoded, source_mask, logits, self_cache, cross_cache


def _end_at_limit(logits, index, limits):
    """Logits that force EOS in the rows whose limit `index` has reached."""
    if limits is None:
        return logits
    vocabulary = ops.shape(logits)[-1]
    only_eos = ops.where(ops.arange(vocabulary) == EOS_ID, 0.0, NEG_INF)
    at_limit = (index >= limits - 1)[:, None]
    return ops.where(at_limit, ops.cast(only_eos, logits.dtype)[None, :], logits)


def greedy(model, source, max_length, limits=None):
    """Greedy decoding.

    Args:
        model: a `Transformer` (sparse or not).
        source: int tensor `(batch, source_length)`, 0-padded.
        max_length: most tokens produced per sentence (EOS included).
        limits: optional int tensor `(batch,)`: each sentence's own most
            tokens (EOS included), at most `max_length`.

    Returns:
        int32 tensor `(batch, max_length)`.
    """
    encoded, source_mask, logits, self_cache, cross_cache = _start(model, source, max_length)
    batch = ops.shape(source)[0]
    logits = _end_at_limit(logits, 0, limits)
    first = ops.cast(ops.argmax(logits, axis=-1), "int32")
    tokens = ops.zeros((batch, max_length), "int32")
    tokens = ops.slice_update(tokens, (0, 0), first[:, None])
    finished = ops.equal(first, EOS_ID)

    def cond(index, tokens, finished, self_cache, cross_cache):
        return ops.logical_and(index < max_length, ops.logical_not(ops.all(finished)))

    def body(index, tokens, finished, self_cache, cross_cache):
        previous = ops.slice(tokens, (0, index - 1), (batch, 1))
        logits, self_cache, cross_cache = model.decode_step(
            previous, index, encoded, source_mask, self_cache, cross_cache, fill_cross=False
        )
        logits = _end_at_limit(logits, index, limits)
        chosen = ops.cast(ops.argmax(logits, axis=-1), "int32")
        chosen = ops.where(finished, PAD_ID, chosen)
        tokens = ops.slice_update(tokens, (0, index), chosen[:, None])
        finished = ops.logical_or(finished, ops.equal(chosen, EOS_ID))
        return index + 1, tokens, finished, self_cache, cross_cache

    state = (ops.convert_to_tensor(1, "int32"), tokens, finished, self_cache, cross_cache)
    _, tokens, _, _, _ = ops.while_loop(cond, body, state)
    return tokens


def beam_search(model, source, max_length, beam_size=4, alpha=0.6, limits=None):
    """Beam search with length penalty (tensor2tensor's algorithm).

    Args:
        model: a `Transformer` (sparse or not).
        source: int tensor `(batch, source_length)`, 0-padded.
        max_length: most tokens produced per sentence (EOS included).
        beam_size: beams kept per sentence.
        alpha: length-penalty exponent (0: none; t2t's default 0.6).
        limits: optional int tensor `(batch,)`: each sentence's own most
            tokens (EOS included), at most `max_length`.

    Returns:
        int32 tensor `(batch, max_length)`: the best finished beam of each
        sentence (the best live one if none finished).
    """
    k = beam_size
    batch = ops.shape(source)[0]
    encoded, source_mask, logits, self_cache, cross_cache = _start(
        model, source, max_length, repeat=k
    )
    vocabulary = ops.shape(logits)[-1]
    beam_limits = None if limits is None else ops.repeat(limits, k, axis=0)
    # One live beam at the start (the others -inf), so the first step's top
    # candidates are distinct tokens.
    initial = ops.convert_to_tensor([0.0] + [NEG_INF] * (k - 1), "float32")
    state = dict(
        alive_seq=ops.zeros((batch, k, max_length), "int32"),
        alive_log_probs=ops.tile(initial[None, :], (batch, 1)),
        finished_seq=ops.zeros((batch, k, max_length), "int32"),
        finished_scores=ops.full((batch, k), NEG_INF, "float32"),
        finished_flags=ops.zeros((batch, k), "bool"),
    )
    batch_offsets = ops.arange(batch, dtype="int32")[:, None] * k

    def gather_beams(tensor, indices):
        """`tensor[b, indices[b, j]]` for `(batch, beams, ...)` tensors."""
        rank = len(tensor.shape)
        expanded = ops.reshape(indices, tuple(ops.shape(indices)) + (1,) * (rank - 2))
        return ops.take_along_axis(tensor, ops.broadcast_to(expanded, ops.shape(indices) + ops.shape(tensor)[2:]), axis=1)

    def advance(index, logits, state, self_cache, cross_cache):
        """One step of bookkeeping, given the live beams' next-token logits."""
        logits = _end_at_limit(logits, index, beam_limits)
        log_probs = ops.log_softmax(ops.reshape(logits, (batch, k, vocabulary)), axis=-1)
        log_probs = log_probs + state["alive_log_probs"][:, :, None]
        penalty = length_penalty(index + 1, alpha)
        flat = ops.reshape(log_probs / penalty, (batch, k * vocabulary))
        top_scores, top_ids = ops.top_k(flat, 2 * k)
        top_ids = ops.cast(top_ids, "int32")
        top_beams = top_ids // vocabulary
        top_tokens = top_ids % vocabulary
        top_seq = gather_beams(state["alive_seq"], top_beams)
        position = ops.cast(ops.equal(ops.arange(max_length, dtype="int32"), index), "int32")
        top_seq = top_seq + top_tokens[:, :, None] * position[None, None, :]
        ended = ops.equal(top_tokens, EOS_ID)

        # Live beams: the best k candidates that did not end.
        alive_scores = top_scores * penalty + ops.where(ended, NEG_INF, 0.0)
        alive_log_probs, keep = ops.top_k(alive_scores, k)
        keep = ops.cast(keep, "int32")
        source_beams = ops.take_along_axis(top_beams, keep, axis=1)
        rows = ops.reshape(source_beams + batch_offsets, (-1,))
        self_cache = ops.take(self_cache, rows, axis=1)
        cross_cache = ops.take(cross_cache, rows, axis=1)

        # Finished beams: the best k of those kept so far and the new endings.
        new_scores = ops.where(ended, top_scores, NEG_INF)
        all_seq = ops.concatenate([state["finished_seq"], top_seq], axis=1)
        all_scores = ops.concatenate([state["finished_scores"], new_scores], axis=1)
        all_flags = ops.concatenate([state["finished_flags"], ended], axis=1)
        finished_scores, best = ops.top_k(all_scores, k)
        best = ops.cast(best, "int32")
        state = dict(
            alive_seq=gather_beams(top_seq, keep),
            alive_log_probs=alive_log_probs,
            finished_seq=gather_beams(all_seq, best),
            finished_scores=finished_scores,
            finished_flags=ops.take_along_axis(all_flags, best, axis=1),
        )
        return state, self_cache, cross_cache

    state, self_cache, cross_cache = advance(0, logits, state, self_cache, cross_cache)
    best_possible_penalty = length_penalty(max_length, alpha)

    def cond(index, state, self_cache, cross_cache):
        # Go on while some live beam could still beat its sentence's best
        # finished one (log probs only fall; the penalty at max_length is
        # the largest divisor).
        best_alive = state["alive_log_probs"][:, 0] / best_possible_penalty
        best_finished = ops.max(
            ops.where(state["finished_flags"], state["finished_scores"], NEG_INF), axis=1
        )
        open_sentences = ops.any(best_alive > best_finished)
        return ops.logical_and(index < max_length, open_sentences)

    def body(index, state, self_cache, cross_cache):
        previous = ops.slice(state["alive_seq"], (0, 0, index - 1), (batch, k, 1))
        logits, self_cache, cross_cache = model.decode_step(
            ops.reshape(previous, (-1, 1)), index, encoded, source_mask,
            self_cache, cross_cache, fill_cross=False,
        )
        state, self_cache, cross_cache = advance(index, logits, state, self_cache, cross_cache)
        return index + 1, state, self_cache, cross_cache

    loop_state = (ops.convert_to_tensor(1, "int32"), state, self_cache, cross_cache)
    _, state, _, _ = ops.while_loop(cond, body, loop_state)
    any_finished = ops.any(state["finished_flags"], axis=1)
    return ops.where(
        any_finished[:, None], state["finished_seq"][:, 0], state["alive_seq"][:, 0]
    )


def decode(model, source, extra_length, beam_size=4, alpha=0.6):
    """Translates `source`: beam search, or greedy decoding when
    `beam_size` is 1. Each sentence may be `extra_length` tokens longer than
    its own source (tensor2tensor's decode length), so what a sentence
    becomes does not depend on the batch it is in.

    Returns:
        int32 tensor `(batch, source_length + extra_length)`.
    """
    limits = ops.sum(ops.cast(ops.not_equal(source, PAD_ID), "int32"), axis=1) + extra_length
    max_length = ops.shape(source)[1] + extra_length
    if beam_size == 1:
        return greedy(model, source, max_length, limits)
    return beam_search(model, source, max_length, beam_size, alpha, limits)


def trim(token_ids):
    """Token id lists (numpy rows) cut at their first EOS, padding dropped."""
    result = []
    for row in token_ids:
        row = [int(t) for t in row]
        if EOS_ID in row:
            row = row[: row.index(EOS_ID)]
        result.append([t for t in row if t != PAD_ID])
    return result
