"""Backend helpers: XLA compilation of pure functions and lazy TensorFlow access.

The core never imports TensorFlow at module level so that it runs where only
Keras and JAX are installed (the GPU machines we borrow have no TensorFlow).
"""

import importlib

import keras


def backend_name():
    return keras.backend.backend()


def jit_compile(fn):
    """Compiles a pure function of tensors with XLA on the active backend.

    Args:
        fn: a function whose arguments and results are (nested lists of)
            tensors. It must not read or assign Keras variables.

    Returns:
        The compiled callable (`tf.function(jit_compile=True)` on TensorFlow,
        `jax.jit` on JAX, `fn` itself elsewhere).
    """
    name = backend_name()
    if name == "tensorflow":
        tf = require_tensorflow("XLA compilation of mask updates")
        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    if name == "jax":
        import jax

        return jax.jit(fn)
    return fn


def tensorflow_available():
    return importlib.util.find_spec("tensorflow") is not None


def require_tensorflow(feature):
    """Imports TensorFlow, or explains that `feature` needs it."""
    try:
        return importlib.import_module("tensorflow")
    except ImportError as error:
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed. Install it "
            "with `pip install tensorflow` (the JAX backend can still train "
            "and strip sparse models without it)."
        ) from error
