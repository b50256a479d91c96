# install: litert | ai_edge_litert
# %% [markdown]
# # Serving sparse models: TF Serving and LiteRT
#
# A trained sparse model has to leave Python at some point. This notebook
# follows one model out:
#
# 1. **TF Serving**: the `export/1` directory layout, what `saved_model_cli`
#    says about the signature, the REST request a client sends and the answer it
#    gets, and what sparsity buys you there: **size** (zeros compress), not speed;
# 2. **LiteRT** (TensorFlow Lite) on CPU: where sparsity does buy speed, if the
#    zeros come in **1x4 blocks** (`tfs.Block((1, 4))`) that LiteRT's block-sparse
#    kernel can skip.
#
# The model is an MLP (784-2048-2048-10) on MNIST, wide enough for latency to
# mean something.

# %% [parameters]
EPOCHS = 5
TRAIN_IMAGES = None   # None: all 4,000 training images of the MNIST subset
HIDDEN = 2048
SPARSITY = 0.9
OUT_DIR = "serving_output"

# %%
import json
import os
import shutil
import tarfile
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tf_sparsity as tfs
from tf_sparsity.demo.data import mnist_subset

tf.get_logger().setLevel("ERROR")
(x_train, y_train), (x_test, y_test) = mnist_subset()
x_train, y_train = x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES]
STEPS = EPOCHS * -(-len(x_train) // 128)
shutil.rmtree(OUT_DIR, ignore_errors=True)

# %% [markdown]
# ## Three models
#
# The same MLP trained dense, with unstructured magnitude pruning to 90%, and with
# magnitude pruning of **1x4 blocks** to 90%: `structure=tfs.Block((1, 4))` scores
# each group of 4 consecutive input weights of a unit by their mean magnitude and
# prunes whole groups.

# %%
def mlp():
    return keras.Sequential([
        keras.Input((784,), name="pixels"),
        keras.layers.Dense(HIDDEN, activation="relu", name="fc1"),
        keras.layers.Dense(HIDDEN, activation="relu", name="fc2"),
        keras.layers.Dense(10, name="fc3"),
    ])


def train(structure=None):
    keras.utils.set_random_seed(0)
    model, callbacks = mlp(), []
    if structure is not None:
        schedule = tfs.PolynomialDecay(0.0, SPARSITY, begin_step=0, end_step=int(0.7 * STEPS),
                                       frequency=max(1, STEPS // 20))
        model = tfs.sparsify(model, tfs.MagnitudePruning(schedule, structure=structure))
        callbacks = [tfs.SparsityCallback()]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, batch_size=128, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    return model


models = {"dense": train(), "unstructured": train(tfs.Unstructured()), "block 1x4": train(tfs.Block((1, 4)))}
for name, model in models.items():
    sparsity = tfs.sparsity_summary(model, print_fn=None).global_sparsity if name != "dense" else 0.0
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"{name:13} sparsity {sparsity:6.1%}  accuracy {accuracy:.4f}")

# %% [markdown]
# ## 1. TF Serving
#
# TF Serving watches a **model base path** and serves the highest numbered
# version below it: `serving/mlp/1/`, later `serving/mlp/2/`, ...
# `tfs.export_saved_model` writes exactly such a version directory: stripped (plain
# layers, zeros where pruned, no tf_sparsity needed to serve it), with a
# `serving_default` signature.

# %%
BASE = os.path.join(OUT_DIR, "serving")
for name in ["dense", "unstructured"]:
    tfs.export_saved_model(models[name], os.path.join(BASE, f"mlp_{name}", "1"))
for root, dirs, files in sorted(os.walk(os.path.join(BASE, "mlp_unstructured"))):
    depth = root[len(BASE):].count(os.sep)
    print("  " * depth + os.path.basename(root) + "/", *files)

# %% [markdown]
# `saved_model_cli` (installed with TensorFlow) shows what a client must send: one
# float input `pixels` of shape (-1, 784), one output of 10 logits. (`2>/dev/null`
# hides TensorFlow's start-up log lines.)

# %%
SPARSE_EXPORT = os.path.join(BASE, "mlp_unstructured", "1")
!saved_model_cli show --dir {SPARSE_EXPORT} --tag_set serve --signature_def serving_default 2>/dev/null
assert _exit_code == 0

# %% [markdown]
# To serve it, point TF Serving at the base path (with Docker; not run here):
#
# ```bash
# docker run -p 8501:8501 \
#   --mount type=bind,source=$PWD/serving_output/serving/mlp_unstructured,target=/models/mlp \
#   -e MODEL_NAME=mlp -t tensorflow/serving
# curl -X POST http://localhost:8501/v1/models/mlp:predict -d @serving_output/request.json
# ```
#
# The REST API's "row" format: a list of `instances`, one per example, each the
# value of the single input (with several inputs, a dict by input name).

# %%
request = {"signature_name": "serving_default", "instances": x_test[:3].round(3).tolist()}
with open(os.path.join(OUT_DIR, "request.json"), "w") as f:
    json.dump(request, f)
text = json.dumps(request)
print(f"request.json, {len(text):,} bytes:")
print(text[:90] + " ... " + text[-30:])

# %% [markdown]
# What the server does with it, done here by loading the SavedModel with plain
# TensorFlow and calling the same signature; the server's answer is
# `{"predictions": [...]}`, one list of 10 logits per instance.

# %%
loaded = tf.saved_model.load(SPARSE_EXPORT)
serve = loaded.signatures["serving_default"]
outputs = serve(pixels=tf.constant(request["instances"], tf.float32))
response = {"predictions": next(iter(outputs.values())).numpy().round(2).tolist()}
print(json.dumps(response)[:200], "...")
print("predicted classes:", np.argmax(response["predictions"], axis=1), " labels:", y_test[:3])

# %% [markdown]
# ### What sparsity buys in a SavedModel: size
#
# A SavedModel stores every kernel as a dense tensor, zeros included, so the
# directory is as large as the dense model's. But zeros compress: gzip the
# directory (as you would to ship it, or as a registry stores it) and the sparse
# model shrinks to a fraction.

# %%
def gzip_size(directory):
    """Bytes of `tar czf` of the directory (gzip's default level 6)."""
    archive = directory.rstrip("/") + ".tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(directory, arcname=".")
    size = os.path.getsize(archive)
    os.remove(archive)
    return size


def dir_size(directory):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(directory) for f in files)


sizes = {}
for name in ["dense", "unstructured"]:
    directory = os.path.join(BASE, f"mlp_{name}", "1")
    sizes[name] = (dir_size(directory), gzip_size(directory))
    print(f"{name:13} SavedModel {sizes[name][0] / 1e6:6.2f} MB   gzipped {sizes[name][1] / 1e6:6.2f} MB")
ratio = sizes["unstructured"][1] / sizes["dense"][1]
print(f"gzipped sparse / dense: {ratio:.2f}")
assert ratio < 0.5

fig, axes = plt.subplots(figsize=(6, 2.6))
axes.barh(["dense", "90% sparse"], [sizes["dense"][1] / 1e6, sizes["unstructured"][1] / 1e6])
axes.set(xlabel="MB, gzipped SavedModel")
plt.show()

# %% [markdown]
# And speed? The SavedModel runs the same dense matrix multiplications whatever
# the zeros, so latency is the dense model's (timed here at batch 1, calls
# interleaved so machine load hits both alike):

# %%
def interleaved_ms(functions, rounds=15, calls=20):
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                function()
            times[name].append((time.perf_counter() - start) / calls * 1e3)
    return {name: float(np.median(values)) for name, values in times.items()}


one = tf.constant(x_test[:1])
signatures = {name: tf.saved_model.load(os.path.join(BASE, f"mlp_{name}", "1")).signatures["serving_default"]
              for name in ["dense", "unstructured"]}
ms = interleaved_ms({name: (lambda s=s: s(pixels=one)) for name, s in signatures.items()})
print({name: f"{value:.3f} ms" for name, value in ms.items()},
      f"-> sparse/dense {ms['unstructured'] / ms['dense']:.2f}x")

# %% [markdown]
# ## 2. LiteRT: speed from block sparsity
#
# On CPUs, scattered zeros gain nothing: LiteRT stores an unstructured sparse weight
# compressed but **densifies** it when the model loads. Its block-sparse
# `FULLY_CONNECTED` kernel does skip zeros, when they come in 1x4 blocks (float
# weights; 1x16 for int8). `tfs.export_litert(model, path)` folds the masks in,
# converts with LiteRT's sparsity optimization and reports how each kernel was
# stored: `block-sparse 1x4` (fast), `sparse, densified` (small file only) or `dense`.

# %%
exports = {}
for name, model in models.items():
    path = os.path.join(OUT_DIR, f"mlp_{name.replace(' ', '_')}.tflite")
    exports[name] = tfs.export_litert(model, path, print_fn=print if name != "dense" else None)
    print()
assert all(kernel.block_sparse for kernel in exports["block 1x4"].kernels)
assert not any(kernel.block_sparse for kernel in exports["unstructured"].kernels)

# %% [markdown]
# Run the three files with `ai_edge_litert.interpreter.Interpreter`, one thread,
# batch 1 (a phone or a single request), and check the outputs match Keras.

# %%
from ai_edge_litert.interpreter import Interpreter


def litert_runner(path, x):
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run():
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target)
    return run


one = x_test[:1]
runners = {name: litert_runner(export.path, one) for name, export in exports.items()}
for name, run in runners.items():
    np.testing.assert_allclose(run(), models[name].predict(one, verbose=0), rtol=1e-4, atol=1e-4)
litert_ms = interleaved_ms(runners)
for name, value in litert_ms.items():
    print(f"{name:13} {value:7.3f} ms   {litert_ms['dense'] / value:4.1f}x dense's speed   "
          f"file {exports[name].size_bytes / 1e6:5.1f} MB")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 2.8))
names = list(litert_ms)
left.barh(names, [litert_ms[n] for n in names], color=["gray", "tab:orange", "tab:green"])
left.set(xlabel="ms per call (batch 1, 1 thread)", title="LiteRT latency")
left.invert_yaxis()
right.barh(names, [exports[n].size_bytes / 1e6 for n in names], color=["gray", "tab:orange", "tab:green"])
right.set(xlabel="MB", title=".tflite size")
right.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# Unstructured 90% makes the file small but not faster; 1x4 blocks make it both
# (the README's benchmark measured 3.5-4x at 90% on 2-core x86, batch 1). Blocks
# constrain the pruning, so check the accuracy (printed at the top): on this MLP
# the cost is small. For int8 (about 4x smaller again), use 1x16 blocks and
# calibrate on a few hundred inputs:
#
# ```python
# sparse = tfs.sparsify(mlp(), tfs.MagnitudePruning(schedule, structure=tfs.Block((1, 16))))
# ... train ...
# tfs.export_litert(sparse, "mlp_int8.tflite", quantize="int8", representative_data=x_train[:500])
# ```
