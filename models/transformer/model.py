"""Transformer (base) for translation, as the paper's `sparse_transformer`.

Built from keras-hub's blocks: `TransformerEncoder`/`TransformerDecoder`
with `normalize_first=True` (pre-layer-norm, tensor2tensor's `n`/`da`
pre-/post-processing), `ReversibleEmbedding` (one matrix for source and
target embeddings and, reversed, the softmax) and `SinePositionEncoding`.
Their attention projections are `EinsumDense` layers and their feed-forward
layers `Dense`, which `tfs.sparsify` wraps in place, and the decoder's
`CachedMultiHeadAttention` gives the key/value caches that decoding needs.

Differences from tensor2tensor's `transformer_base`, both minor: keras-hub
applies no dropout between the two feed-forward layers (t2t's
`relu_dropout`; residual and attention dropout are as in t2t), and its
sinusoids interleave sine and cosine channels instead of concatenating
them (an equivalent encoding for a model trained from scratch).
"""

import math

import keras
import keras_hub
from keras import ops

import tf_sparsity as tfs

PAD_ID = 0
EOS_ID = 1
EMBEDDING_NAME = "shared_embedding"


@keras.saving.register_keras_serializable(package="tf_sparsity_models")
class Transformer(keras.Model):
    """An encoder-decoder Transformer with one shared embedding matrix.

    `call({"source": ..., "target": ...})` returns the logits of the next
    target token at every position (teacher forcing); the decoder input is
    the target shifted right by one, starting with `PAD_ID` (tensor2tensor's
    convention, so no start token is needed). `encode` and `decode_step`
    are what the decoders in `decoding.py` use.

    Args:
        vocabulary_size: size of the shared source/target vocabulary.
        num_layers: encoder layers (and decoder layers).
        hidden_size: model width (d_model).
        num_heads: attention heads.
        filter_size: width of the feed-forward layers.
        dropout: residual and attention dropout.
        layer_norm_epsilon: epsilon of every layer norm.

    Input shape:
        `source`, `target`: int tensors `(batch, length)`, 0-padded.

    Output shape:
        `(batch, target_length, vocabulary_size)` logits.
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers=6,
        hidden_size=512,
        num_heads=8,
        filter_size=2048,
        dropout=0.1,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.filter_size = filter_size
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size,
            hidden_size,
            # t2t: N(0, d^-1/2), and inputs scaled by sqrt(d).
            embeddings_initializer=keras.initializers.RandomNormal(stddev=hidden_size**-0.5),
            name=EMBEDDING_NAME,
        )
        self.position_encoding = keras_hub.layers.SinePositionEncoding(name="position_encoding")
        self.input_dropout = keras.layers.Dropout(dropout, name="input_dropout")
        block_args = dict(
            intermediate_dim=filter_size,
            num_heads=num_heads,
            dropout=dropout,
            activation="relu",
            layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=True,
            kernel_initializer="glorot_uniform",
        )
        self.encoder_layers = [
            keras_hub.layers.TransformerEncoder(name=f"encoder_{i}", **block_args)
            for i in range(num_layers)
        ]
        self.decoder_layers = [
            keras_hub.layers.TransformerDecoder(name=f"decoder_{i}", **block_args)
            for i in range(num_layers)
        ]
        # Pre-layer-norm stacks end with a layer norm of their own.
        self.encoder_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="encoder_norm"
        )
        self.decoder_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="decoder_norm"
        )

    @property
    def head_size(self):
        return self.hidden_size // self.num_heads

    def _embed(self, token_ids, start_index=0, training=None):
        x = self.embedding(token_ids) * ops.cast(math.sqrt(self.hidden_size), self.compute_dtype)
        x = x + self.position_encoding(x, start_index=start_index)
        return self.input_dropout(x, training=training)

    def encode(self, source, training=None):
        """Encodes `source` `(batch, length)`; returns `(encoded, padding_mask)`."""
        padding_mask = ops.not_equal(source, PAD_ID)
        x = self._embed(source, training=training)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        return self.encoder_norm(x), padding_mask

    def logits(self, decoded):
        """Logits from decoder outputs, through the shared (reversed) embedding."""
        return ops.cast(self.embedding(decoded, reverse=True), "float32")

    def call(self, inputs, training=None):
        source, target = inputs["source"], inputs["target"]
        encoded, source_mask = self.encode(source, training=training)
        # Shift right: position t sees targets < t, starting from PAD_ID.
        decoder_input = ops.pad(target[:, :-1], [[0, 0], [1, 0]], constant_values=PAD_ID)
        x = self._embed(decoder_input, training=training)
        # No decoder padding mask: the causal mask keeps every real position
        # from seeing the padding after it (as in t2t).
        for layer in self.decoder_layers:
            x = layer(
                x,
                encoded,
                encoder_padding_mask=source_mask,
                training=training,
            )
        return self.logits(self.decoder_norm(x))

    def empty_caches(self, batch_size, max_length, source_length):
        """Zero self- and cross-attention caches for decoding, stacked over
        layers: `(layers, batch, 2, length, heads, head_size)`."""
        dtype = self.compute_dtype
        shape = (self.num_layers, batch_size, 2)
        tail = (self.num_heads, self.head_size)
        return (
            ops.zeros(shape + (max_length,) + tail, dtype=dtype),
            ops.zeros(shape + (source_length,) + tail, dtype=dtype),
        )

    def decode_step(self, tokens, index, encoded, source_mask, self_cache, cross_cache, fill_cross):
        """Logits of the next token after `tokens` `(batch, 1)` at position
        `index`, reading and updating the caches (`fill_cross`: compute the
        cross-attention cache from `encoded`, on the first step).

        Returns:
            `(logits (batch, vocabulary), self_cache, cross_cache)`.
        """
        x = self._embed(tokens, start_index=index)
        new_self, new_cross = [], []
        for i, layer in enumerate(self.decoder_layers):
            x, layer_self, layer_cross = layer(
                x,
                encoded,
                encoder_padding_mask=source_mask,
                self_attention_cache=self_cache[i],
                self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache[i],
                cross_attention_cache_update_index=0 if fill_cross else None,
            )
            new_self.append(layer_self)
            new_cross.append(layer_cross)
        logits = self.logits(self.decoder_norm(x))[:, 0, :]
        return logits, ops.stack(new_self), ops.stack(new_cross)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            filter_size=self.filter_size,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config


def build(model, source_length=8, target_length=8):
    """Builds `model`'s variables by calling it once on padding."""
    dummy = ops.ones((1, source_length), "int32")
    model({"source": dummy, "target": ops.ones((1, target_length), "int32")})
    return model


def sparsity_distribution(embedding_sparsity=None):
    """The paper's choice of sparsified weights.

    Every attention projection (q, k, v and output of encoder self-, decoder
    self- and cross-attention), both feed-forward layers and the shared
    embedding/softmax matrix are sparsified. `embedding_sparsity` gives the
    embedding its own target (the reference's `embedding_sparsity` hparam);
    0 keeps it dense (the paper's `mpfc` runs).
    """
    if embedding_sparsity is None:
        return tfs.Uniform()
    if embedding_sparsity == 0:
        return tfs.Uniform(dense=[EMBEDDING_NAME])
    return tfs.Uniform(targets={EMBEDDING_NAME: float(embedding_sparsity)})
