"""`import tf_sparsity` and the core work where TensorFlow is not installed."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.core,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX"),
]

_SCRIPT = textwrap.dedent(
    """
    import sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("TensorFlow is not installed here")

    sys.meta_path.insert(0, NoTensorFlow())
    import numpy as np
    import keras
    import tf_sparsity as tfs

    assert keras.backend.backend() == "jax"
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    schedule = tfs.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=4, frequency=2)
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule), distribution=tfs.ERK())
    sparse.compile("adam", "mse", jit_compile=True)
    x = np.random.rand(32, 6).astype("float32")
    y = np.random.rand(32, 2).astype("float32")
    sparse.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfs.SparsityCallback()])
    report = tfs.sparsity_summary(sparse, print_fn=None)
    assert abs(report.global_sparsity - 0.75) < 0.01, report.global_sparsity
    plain = tfs.strip(sparse)
    np.testing.assert_allclose(plain.predict(x, verbose=0), sparse.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    try:
        tfs.export_saved_model(sparse, "unused")
    except ImportError as error:
        assert "needs TensorFlow" in str(error)
    else:
        raise AssertionError("export without TensorFlow should explain it needs TensorFlow")
    assert "tensorflow" not in sys.modules
    print("OK")
    """
)


def test_core_runs_on_jax_without_tensorflow(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env=dict(os.environ, KERAS_BACKEND="jax"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("OK")
