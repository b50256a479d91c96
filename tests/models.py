"""Small models of every structure, shared by the tests."""

import keras
from keras import layers


def sequential(input_dim=8):
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            layers.Dense(16, activation="relu", name="hidden"),
            layers.BatchNormalization(name="bn"),
            layers.Dense(4, name="logits"),
        ],
        name="seq",
    )


def functional_with_nested():
    inner_in = keras.Input((16,))
    inner_out = layers.Dense(12, name="inner_dense")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner_model")
    x_in = keras.Input((8,))
    x = layers.Dense(16, activation="relu", name="first")(x_in)
    x = inner(x)
    out = layers.Dense(3, name="head")(x)
    return keras.Model(x_in, out, name="outer")


@keras.saving.register_keras_serializable(package="tf_sparsity_tests")
class Block(layers.Layer):
    """A custom layer that builds its sublayers itself."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.up = layers.Dense(units * 2, activation="relu", name="up")
        self.down = layers.Dense(units, name="down")
        self.norm = layers.LayerNormalization(name="norm")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.up.build(input_shape)
        self.down.build(input_shape[:-1] + (self.units * 2,))
        self.norm.build(input_shape[:-1] + (self.units,))

    def call(self, x, training=None):
        return self.norm(self.down(self.up(x, training=training), training=training))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="tf_sparsity_tests")
class Subclassed(keras.Model):
    """A subclassed model with a list of custom blocks and attention."""

    def __init__(self, units=8, num_blocks=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_blocks = num_blocks
        self.embed = layers.Dense(units, name="embed")
        self.blocks = [Block(units, name=f"block_{i}") for i in range(num_blocks)]
        self.attention = layers.MultiHeadAttention(2, 4, name="attention")
        self.out = layers.Dense(2, name="out")

    def call(self, x, training=None):
        x = self.embed(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.attention(x, x, training=training)
        return self.out(x, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "num_blocks": self.num_blocks,
        }


def subclassed(seq_len=5, features=6):
    model = Subclassed()
    model(keras.ops.zeros((1, seq_len, features)))
    return model


def functional_with_attention(seq_len=5, features=6):
    inp = keras.Input((seq_len, features))
    x = layers.Dense(8, name="proj")(inp)
    x = layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = Block(8, name="block")(x)
    out = layers.Dense(2, name="out")(x)
    return keras.Model(inp, out, name="attn_model")


def lenet_300_100():
    return keras.Sequential(
        [
            keras.Input((784,)),
            layers.Dense(300, activation="relu", name="fc1"),
            layers.Dense(100, activation="relu", name="fc2"),
            layers.Dense(10, name="fc3"),
        ],
        name="lenet_300_100",
    )
