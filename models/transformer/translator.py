"""The `Translator`: sentences in, translations out, with a trained model
(BLEU evaluation and `tf-sparsity translate` use it)."""

import numpy as np
import tensorflow as tf

from tf_sparsity_models.transformer import decoding


class Translator:
    """Translates sentences with a trained model, in batches of similar
    length (sorted, so little padding), decoding in one compiled function
    per padded source length.

    Args:
        model: a `Transformer` (sparse or not).
        codec: what turns sentences into token ids and back (its
            `tokenize` and `detokenize`): a `vocab.Codec`, or the run's
            data.
        beam_size: beams (1: greedy decoding).
        alpha: length-penalty exponent.
        extra_length: a translation may be this many tokens longer than
            its source.
        batch_size: sentences per batch.
        jit_compile: compile the decoder with XLA.
    """

    def __init__(self, model, codec, beam_size=4, alpha=0.6, extra_length=50, batch_size=64, jit_compile=True):
        self.codec = codec
        self.extra_length = extra_length
        self.batch_size = batch_size

        def translate_ids(source):
            return decoding.decode(model, source, extra_length, beam_size, alpha)

        self._decode = tf.function(translate_ids, jit_compile=jit_compile, reduce_retracing=False)

    def __call__(self, sentences):
        """Translations of `sentences` (a list of str), in order."""
        token_lists = self.codec.tokenize(list(sentences))
        order = np.argsort([len(t) for t in token_lists], kind="stable")
        outputs = [None] * len(token_lists)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            longest = max(len(token_lists[i]) for i in chosen)
            width = -(-longest // 8) * 8  # Few distinct shapes to compile.
            source = np.zeros((len(chosen), width), np.int32)
            for row, index in enumerate(chosen):
                source[row, : len(token_lists[index])] = token_lists[index]
            ids = self._decode(tf.constant(source)).numpy()
            for index, text in zip(chosen, self.codec.detokenize(decoding.trim(ids))):
                outputs[index] = text
        return outputs
