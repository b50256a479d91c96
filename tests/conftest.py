"""Test set-up: backend selection, two logical CPU devices, markers.

The suite runs twice (see README): with KERAS_BACKEND=tensorflow (everything)
and with KERAS_BACKEND=jax (tests marked `core`).
"""

import os
import shutil
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# JAX's persistent compilation cache, one directory per test session, shared
# by the xdist workers and the subprocesses tests start (they inherit the
# environment): tests build the same small models again and again, and an
# identical XLA program is then compiled once instead of in every test
# (about a third off the JAX run's time). Set before Keras imports JAX; a cache
# directory given by the caller is used as it is.
_OWN_JAX_CACHE = None
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_JAX_CACHE = tempfile.mkdtemp(prefix="tf_sparsity_tests_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_JAX_CACHE
    # Cache every program, not only those slower than a second to compile.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# On JAX, XLA's LLVM back end at its lowest optimization level (appended to
# any XLA_FLAGS given): the core tests compile many small programs (every
# train step, every mask update) and run each a few times, so compilation
# dominates; the flag changes how fast the generated CPU code is, not the XLA
# computation (the HLO passes are the same). The JAX run went from 6:18 to
# 4:27. Not on TensorFlow, whose tests also run XLA-compiled training for
# hundreds of steps (LeNet to 80% accuracy): there it cost more than it saved.
if os.environ["KERAS_BACKEND"] == "jax" and (
    "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

if BACKEND == "tensorflow":
    import tensorflow as tf

    # Two logical CPUs for MirroredStrategy tests; must precede any TF op.
    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration()] * 2,
    )


def pytest_unconfigure(config):
    if _OWN_JAX_CACHE is not None:
        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    skip_tf = pytest.mark.skip(reason="needs the TensorFlow backend")
    skip_other = pytest.mark.skip(reason=f"not a core test ({BACKEND} backend)")
    for item in items:
        if "tensorflow" in item.keywords and BACKEND != "tensorflow":
            item.add_marker(skip_tf)
        elif BACKEND != "tensorflow" and "core" not in item.keywords:
            item.add_marker(skip_other)
    # Long tests first (a stable sort keeps each module's order): with
    # `--dist worksteal` the two workers then end together instead of one
    # waiting for a long test that started last.
    items.sort(key=lambda item: "slow" not in item.keywords)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Without a full garbage collection per test (~0.4 s each, about 3 of
    # the suite's minutes); Python's own collector still runs.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
