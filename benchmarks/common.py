"""Shared helpers of the hand-run benchmarks: machine info, models, results."""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
from keras import ops

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine_info():
    """What the numbers were measured on."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_physical_devices()]
    elif keras.backend.backend() == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
        info["device_kind"] = jax.devices()[0].device_kind
    return info


def write_result(name, payload):
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path


def run_tfmot_peer(*arguments):
    """Runs `tfmot_peer.py` with `arguments` in its own process; returns its JSON.

    tfmot needs legacy tf_keras (`TF_USE_LEGACY_KERAS=1`), which cannot share
    a process with Keras 3. The peer prints its result as the last line of
    stdout. Raises `RuntimeError` with the end of its stderr when it fails.
    """
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfmot_peer.py")
    result = subprocess.run(
        [sys.executable, peer, *map(str, arguments)],
        capture_output=True, text=True, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"),
    )
    if result.returncode != 0:
        raise RuntimeError(f"tfmot peer failed: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def small_cnn(num_classes=10, input_shape=(32, 32, 3)):
    """A small CIFAR-style CNN (four 3x3 convs, one hidden dense)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(256, activation="relu", name="fc1"),
            layers.Dense(num_classes, name="fc2"),
        ],
        name="small_cnn",
    )


def build_model(name):
    """Returns `(model, input_shape, num_classes)` for a benchmark model name."""
    from tf_sparsity_models.demo import lenet

    if name == "lenet300":
        return lenet.lenet_300_100(), (784,), 10
    if name == "lenet5":
        return lenet.lenet5(), (28, 28, 1), 10
    if name == "cnn":
        return small_cnn(), (32, 32, 3), 10
    if name.startswith("resnet50"):
        size = int(name.split("_")[1]) if "_" in name else 64
        model = keras.applications.ResNet50(
            weights=None, input_shape=(size, size, 3), classes=1000, classifier_activation=None
        )
        return model, (size, size, 3), 1000
    raise ValueError(f"Unknown benchmark model {name!r}.")


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of each training step (waiting for its result)."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            ops.convert_to_numpy(logs["loss"])  # Wait for the step to finish.
        self.times.append(time.perf_counter() - self._start)


def median(values):
    return statistics.median(values) if values else float("nan")


def random_batches(input_shape, num_classes, batch_size, steps, seed=0):
    """Random data for `steps` batches (in memory: no input pipeline cost)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size * steps,) + tuple(input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=batch_size * steps)
    return x, y
