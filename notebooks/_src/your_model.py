# install: | keras_hub
# %% [markdown]
# # Sparsifying the models you actually have
#
# The quickstart pruned a `Sequential` stack of `Dense` layers. Real models are
# subclassed, use `MultiHeadAttention`, come from keras-hub, train in custom
# loops, and sometimes run on JAX. `tfs.sparsify` handles all of them the same
# way: it walks the model's layer tree and replaces each chosen layer, wherever
# it is held (graph node, attribute, list), by a `tfs.SparseWrapper` **in place**.
# The model keeps its class and its methods.
#
# This notebook shows
#
# 1. a **subclassed** model trained in a **custom training loop** with `tfs.update_masks`;
# 2. a **functional** model with `MultiHeadAttention`, and **choosing layers** by class, name and regex;
# 3. **how sparsity is spread** over layers: `Uniform`, `ERK`, `PerLayer`;
# 4. a **keras-hub** Transformer stack, saved and reloaded with `tfs.save` / `tfs.load`;
# 5. the same library on the **JAX** backend.

# %% [parameters]
EPOCHS = 3
TRAIN_IMAGES = None   # None: all 4,000 training images of the MNIST subset
RUN_JAX = True        # section 5 starts a second Python process with KERAS_BACKEND=jax
OUT_DIR = "your_model_output"

# %%
import os
import sys

import keras
import keras_hub
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tf_sparsity as tfs
from tf_sparsity.demo.data import mnist_subset

os.makedirs(OUT_DIR, exist_ok=True)
tf.get_logger().setLevel("ERROR")   # no retracing notices: we build many small models
keras.utils.set_random_seed(0)
(x_train, y_train), (x_test, y_test) = mnist_subset()
x_train, y_train = x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES]
BATCH = 128
STEPS = EPOCHS * -(-len(x_train) // BATCH)
print(f"{len(x_train)} training images, {STEPS} steps per run, Keras on {keras.backend.backend()}")

# %% [markdown]
# ## 1. A subclassed model in a custom training loop
#
# A subclassed model holds its layers as attributes (here, also in a list). It must
# be **built** before `sparsify` (call it once on data), so that the kernels exist.

# %%
class MLP(keras.Model):
    def __init__(self, hidden=(300, 100), classes=10, **kwargs):
        super().__init__(**kwargs)
        self.hidden = [keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")
                       for i, units in enumerate(hidden)]
        self.dropout = keras.layers.Dropout(0.1)
        self.logits = keras.layers.Dense(classes, name="logits")

    def call(self, x, training=False):
        for layer in self.hidden:
            x = self.dropout(layer(x), training=training)
        return self.logits(x)


mlp = MLP()
mlp(x_train[:1])   # build
schedule = tfs.PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
                               end_step=int(0.7 * STEPS), frequency=max(1, STEPS // 10))
mlp = tfs.sparsify(mlp, tfs.MagnitudePruning(schedule))
print(type(mlp).__name__, "- sparse layers:", [path for path, _ in tfs.sparse_layers(mlp)])

# %% [markdown]
# Without `model.fit` there is no `SparsityCallback`; call
# **`tfs.update_masks(model, step)` before every step** instead. It does work only on
# the steps the schedule chooses and returns `True` there. (Forgetting it is an
# error at the first training call, not a silently dense model.) Add `model.losses`
# to the loss: that is where variational dropout and L0 put their penalties.

# %%
optimizer = keras.optimizers.Adam(1e-3)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, mlp(x, training=True)) + sum(mlp.losses)
    gradients = tape.gradient(loss, mlp.trainable_variables)
    optimizer.apply(gradients, mlp.trainable_variables)
    return loss


dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(4096, seed=0).batch(BATCH)
step, updates = 0, []
for epoch in range(EPOCHS):
    for x, y in dataset:
        if tfs.update_masks(mlp, step):
            updates.append(step)
        loss = train_step(x, y)
        step += 1
    print(f"epoch {epoch + 1}: loss {float(loss):.3f}")
print("masks recomputed at steps", updates)
accuracy = np.mean(np.argmax(mlp.predict(x_test, verbose=0), axis=1) == y_test)
report = tfs.sparsity_summary(mlp)
print(f"test accuracy {accuracy:.4f}")
assert abs(report.global_sparsity - 0.8) < 1e-3

# %% [markdown]
# ## 2. A functional model with attention; choosing layers
#
# A small attention classifier that reads each MNIST image as a sequence of 28
# rows. `MultiHeadAttention` is a composite layer: its `query`, `key`, `value` and
# `attention_output` projections are `EinsumDense` layers, and those are what gets
# wrapped.

# %%
def attention_classifier():
    rows = keras.Input((28, 28), name="rows")
    x = keras.layers.Dense(64, name="embed")(rows)
    attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16, name="attention")(x, x)
    x = keras.layers.LayerNormalization()(x + attended)
    x = keras.layers.Flatten()(x)   # keeps the row order (attention alone ignores it)
    return keras.Model(rows, keras.layers.Dense(10, name="classifier")(x))

# %% [markdown]
# `layers=` picks what to sparsify: layer **classes**, **names**, or **regexes**
# (matched with `re.fullmatch` against the slash-joined path of the layer or any
# block containing it). Naming a block selects everything inside it; a selector
# that matches nothing is an error, not a silent no-op.

# %%
selections = {
    "everything (default)": None,
    "by class": [keras.layers.MultiHeadAttention],
    "by name": ["embed", "classifier"],
    "by regex": ["attention/(query|key)"],
}
for label, selector in selections.items():
    model = tfs.sparsify(attention_classifier(), tfs.MagnitudePruning(tfs.OneShot(0.8)), layers=selector)
    print(f"{label:22} -> {[path for path, _ in tfs.sparse_layers(model)]}")
try:
    tfs.sparsify(attention_classifier(), tfs.MagnitudePruning(tfs.OneShot(0.8)), layers=["atention"])
except ValueError as error:
    print("typo ->", error)

# %% [markdown]
# Train the attention projections only, pruned in one shot to 80% at the first step
# (`tfs.OneShot`) and then fine-tuned with their masks fixed:

# %%
attention = tfs.sparsify(attention_classifier(), tfs.MagnitudePruning(tfs.OneShot(0.8)),
                         layers=[keras.layers.MultiHeadAttention])
attention.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
attention.fit(x_train.reshape(-1, 28, 28), y_train, batch_size=BATCH, epochs=EPOCHS, verbose=0,
              callbacks=[tfs.SparsityCallback()])
print("accuracy:", round(attention.evaluate(x_test.reshape(-1, 28, 28), y_test, verbose=0)[1], 4))
report = tfs.sparsity_summary(attention)

# %% [markdown]
# The global figure counts the kept-dense `embed` and `classifier` kernels with all
# their weights: global sparsity is always over all supported layers.
#
# ## 3. How the sparsity is spread: `Uniform`, `ERK`, `PerLayer`
#
# A global target can be spread over layers in different ways, and it matters: a
# first convolution with 500 weights is cheap to keep and expensive to lose.
#
# * `tfs.Uniform(dense=[...], targets={...})`: every layer at the target, some kept
#   dense or given their own target;
# * `tfs.ERK()`: Erdős–Rényi-Kernel, density proportional to sum(shape)/prod(shape),
#   so small layers stay denser, solved to reach the global target exactly;
# * `tfs.PerLayer({...})`: you fix some layers, the rest share what is left.
#
# On LeNet-5 at 90% overall (applied at step 0 with `OneShot`, no training needed
# to see where the zeros go):

# %%
from tf_sparsity.demo.lenet import lenet5

distributions = {
    "Uniform(dense=['conv1'])": tfs.Uniform(dense=["conv1"]),
    "ERK()": tfs.ERK(),
    "PerLayer({'fc2': 0.5})": tfs.PerLayer({"fc2": 0.5}),
}
per_layer = {}
for label, distribution in distributions.items():
    model = tfs.sparsify(lenet5(), tfs.MagnitudePruning(tfs.OneShot(0.9)), distribution=distribution)
    tfs.update_masks(model, 0)   # OneShot prunes at step 0
    report = tfs.sparsity_summary(model, print_fn=None)
    per_layer[label] = {layer.path: layer.sparsity for layer in report.layers}
    print(f"{label:26} global {report.global_sparsity:.2%}  " +
          "  ".join(f"{path} {value:.0%}" for path, value in per_layer[label].items()))
    if label != "Uniform(dense=['conv1'])":   # ERK and PerLayer solve for the global target
        assert abs(report.global_sparsity - 0.9) < 1e-3

# %% [markdown]
# `Uniform` puts 90% on every layer it prunes, so keeping `conv1` dense leaves the
# model slightly below 90% overall; `ERK` and `PerLayer` solve for the global
# target exactly.

# %%
paths = list(next(iter(per_layer.values())))
width = 0.8 / len(per_layer)
fig, axes = plt.subplots(figsize=(8, 3))
for i, (label, values) in enumerate(per_layer.items()):
    axes.bar(np.arange(len(paths)) + i * width, [values[p] for p in paths], width, label=label)
axes.set_xticks(np.arange(len(paths)) + width * (len(per_layer) - 1) / 2, paths)
axes.set(ylabel="sparsity", ylim=(0, 1), title="LeNet-5 at 90% global sparsity")
axes.legend(loc="lower left", fontsize="small")
plt.show()

# %% [markdown]
# ## 4. A keras-hub Transformer stack; `tfs.save` and `tfs.load`
#
# keras-hub layers are composites too: a `TransformerEncoder` holds attention
# projections (`EinsumDense`) and a feed-forward block (`Dense`). Selecting the
# class selects what is inside every encoder. A toy task: does a sequence of 24
# tokens hold more small ids (< 50) than large ones?

# %%
VOCAB, LENGTH = 100, 24
rng = np.random.default_rng(0)
tokens = rng.integers(1, VOCAB, size=(len(x_train), LENGTH)).astype("int32")
labels = ((tokens < 50).sum(axis=1) > LENGTH // 2).astype("int32")
test_tokens = rng.integers(1, VOCAB, size=(1000, LENGTH)).astype("int32")
test_labels = ((test_tokens < 50).sum(axis=1) > LENGTH // 2).astype("int32")


def encoder_classifier():
    ids = keras.Input((LENGTH,), dtype="int32", name="tokens")
    x = keras_hub.layers.TokenAndPositionEmbedding(VOCAB, LENGTH, 32, name="embedding")(ids)
    for i in range(2):
        x = keras_hub.layers.TransformerEncoder(64, num_heads=4, name=f"encoder_{i}")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(2, name="classifier")(x))


encoder = tfs.sparsify(encoder_classifier(),
                       tfs.make_method("magnitude", 0.8, STEPS),
                       layers=[keras_hub.layers.TransformerEncoder])
encoder.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
encoder.fit(tokens, labels, batch_size=64, epochs=EPOCHS, verbose=0, callbacks=[tfs.SparsityCallback()])
print("accuracy:", round(encoder.evaluate(test_tokens, test_labels, verbose=0)[1], 4))
report = tfs.sparsity_summary(encoder)

# %% [markdown]
# keras-hub's `PositionEmbedding` is not a supported layer type: the summary lists
# it as `unsupported` and counts it as dense. (Your own layer types can be made
# sparsifiable with `tfs.register_sparsifiable(MyLayer, ["kernel"])`.)
#
# **Saving.** Use `tfs.save` / `tfs.load` for sparse models: they record every
# wrapper, including those hidden inside composite layers that the model's own
# config does not describe, and restore weights, masks, the compiled loss and the
# optimizer state, so training can continue. (`model.save` works for plain
# Sequential/functional models; for the rest it refuses to load rather than load
# a wrong model.)

# %%
path = os.path.join(OUT_DIR, "encoder.keras")
tfs.save(encoder, path)
restored = tfs.load(path)
np.testing.assert_allclose(restored.predict(test_tokens, verbose=0),
                           encoder.predict(test_tokens, verbose=0), rtol=1e-5, atol=1e-5)
print(f"{path}: {os.path.getsize(path) / 1e3:.0f} kB, same predictions, sparsity "
      f"{tfs.sparsity_summary(restored, print_fn=None).global_sparsity:.2%}, "
      f"optimizer at step {int(restored.optimizer.iterations)}")

# %% [markdown]
# ## 5. JAX
#
# The core of tf_sparsity (wrappers, methods, schedules, distributions, `strip`) is
# written with `keras.ops` and runs on JAX as well. A Python process has one Keras
# backend, chosen when Keras is first imported, so we write a short script and run
# it in a fresh process with `KERAS_BACKEND=jax`. (SavedModel export needs
# TensorFlow; on JAX, `strip` and then `model.export` or `tfs.save`.)

# %%
%%writefile jax_demo.py
import sys

import keras
import numpy as np

import tf_sparsity as tfs
from tf_sparsity.demo.data import mnist_subset
from tf_sparsity.demo.lenet import lenet_300_100

epochs, images = int(sys.argv[1]), int(sys.argv[2])
(x, y), (x_test, y_test) = mnist_subset()
x, y = x[:images], y[:images]
steps = epochs * -(-len(x) // 128)
model = tfs.sparsify(lenet_300_100(), tfs.make_method("magnitude", 0.9, steps))
model.compile(optimizer="adam", metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[tfs.SparsityCallback()])
print("backend:", keras.backend.backend())
print("accuracy:", round(model.evaluate(x_test, y_test, verbose=0)[1], 4))
report = tfs.sparsity_summary(model)
plain = tfs.strip(model)
assert np.allclose(plain.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5)
assert abs(report.global_sparsity - 0.9) < 1e-3
print("stripped:", [type(layer).__name__ for layer in plain.layers])

# %%
import subprocess

if RUN_JAX:
    result = subprocess.run([sys.executable, "jax_demo.py", str(EPOCHS), str(len(x_train))],
                            env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True)
    print(result.stdout)
    assert result.returncode == 0, result.stderr[-3000:]

# %% [markdown]
# ## Summary
#
# | you have | do |
# |---|---|
# | any model | build it, `tfs.sparsify(model, method, distribution=..., layers=...)`, compile, train |
# | `model.fit` | `callbacks=[tfs.SparsityCallback()]` |
# | a custom loop | `tfs.update_masks(model, step)` before each step; add `model.losses` |
# | a composite layer | select the block (class or name): what is inside is wrapped |
# | to save and resume | `tfs.save` / `tfs.load` |
# | to deploy | `tfs.strip` or `tfs.export_saved_model` (see the `serving` notebook) |
