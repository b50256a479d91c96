"""Exporting a trained sparse Transformer for TF Serving.

The SavedModel holds the stripped model (`tfs.strip`: plain keras-hub
layers, pruned weights folded in as zeros) and the SentencePiece vocabulary,
with two endpoints:

- `serving_default` (also `translate`): `sentences`, a string tensor
  `(batch,)` of source sentences, returns `translations` `(batch,)`:
  tokenization, beam search (or greedy decoding) and detokenization all run
  in the graph.
- `translate_ids`: `source_ids` int32 `(batch, length)` (0-padded, each row
  ending with EOS = 1), returns `token_ids` int32 `(batch, length + extra_length)`: each
  translation, its EOS, then 0s.

Serving needs `tensorflow` and `tensorflow-text` (its SentencePiece op):
`import tensorflow_text` before `tf.saved_model.load`, and TF Serving builds
that include the tensorflow-text ops. Neither tf_sparsity nor keras-hub is
needed.
"""

import keras
import tensorflow as tf

import tf_sparsity as tfs
from tf_sparsity_models.transformer import decoding
from tf_sparsity_models.transformer import vocab as vocab_lib
from tf_sparsity_models.transformer.vocab import add_eos
from tf_sparsity_models.transformer.model import EOS_ID
from tf_sparsity_models.transformer.model import PAD_ID

STRINGS_ENDPOINT = "translate"
IDS_ENDPOINT = "translate_ids"


def strip_after_eos(token_ids):
    """A ragged tensor of each row's tokens before its first EOS."""
    ended = tf.cumsum(tf.cast(tf.equal(token_ids, EOS_ID), tf.int32), axis=1) > 0
    keep = tf.logical_and(tf.logical_not(ended), tf.not_equal(token_ids, PAD_ID))
    return tf.ragged.boolean_mask(token_ids, keep)


def export_for_serving(model, export_dir, proto, beam_size=4, alpha=0.6, extra_length=50):
    """Strips `model` and writes it, with its vocabulary, as a SavedModel.

    Args:
        model: the trained `Transformer` (sparse or dense); not modified.
        export_dir: output directory (e.g. `model_dir/export/1`).
        proto: the serialized SentencePiece model of the run (None, for
            synthetic data: only the token-id endpoint, then the default).
        beam_size: beams (1: greedy decoding).
        alpha: length-penalty exponent.
        extra_length: a translation may be this many tokens longer than
            its source.

    Returns:
        The stripped Keras model that was exported.
    """
    plain = tfs.strip(model)

    def translate_ids(source_ids):
        token_ids = decoding.decode(plain, source_ids, extra_length, beam_size, alpha)
        return {"token_ids": token_ids}

    archive = keras.export.ExportArchive()
    archive.track(plain)
    if proto is not None:
        tokenizer = vocab_lib.tokenizer(proto)

        def translate(sentences):
            source = add_eos(tokenizer(sentences)).to_tensor(default_value=PAD_ID)
            token_ids = translate_ids(source)["token_ids"]
            return {"translations": tokenizer.detokenize(strip_after_eos(token_ids))}

        archive.track(tokenizer)
        # The first endpoint added also becomes "serving_default".
        archive.add_endpoint(
            STRINGS_ENDPOINT,
            translate,
            input_signature=[tf.TensorSpec((None,), tf.string, name="sentences")],
        )
    archive.add_endpoint(
        IDS_ENDPOINT,
        translate_ids,
        input_signature=[tf.TensorSpec((None, None), tf.int32, name="source_ids")],
    )
    archive.write_out(export_dir, verbose=False)
    return plain
