"""Backend helpers: XLA compilation of pure functions and lazy TensorFlow access.

The core never imports TensorFlow at module level, so that it runs where only
Keras and JAX are installed.
"""

import importlib

import keras


def backend_name():
    return keras.backend.backend()


def jit_compile(fn, static_shapes=False):
    """Compiles a pure function of tensors with XLA on the active backend.

    Args:
        fn: a function whose arguments and results are (nested lists of)
            tensors. It must not read or assign Keras variables, nor branch
            or loop in Python on tensor values (no AutoGraph: use
            `ops.cond` and `ops.fori_loop`, as `jax.jit` requires too).
        static_shapes: keep every traced shape static (one compilation per
            input shape), for functions whose Python code reads shapes.
            Otherwise TensorFlow may trace a shape-generic version after
            the first retrace.

    Returns:
        The compiled callable (`tf.function(jit_compile=True)` on TensorFlow,
        `jax.jit` on JAX, `fn` itself elsewhere).
    """
    name = backend_name()
    if name == "tensorflow":
        tf = require_tensorflow("XLA compilation of mask updates")
        # No AutoGraph: the function is pure `keras.ops` code that also runs
        # under `jax.jit`, so it has no tensor-dependent Python control flow
        # to convert, and converting its call tree is a large part of tracing.
        return tf.function(
            fn, jit_compile=True, reduce_retracing=not static_shapes, autograph=False
        )
    if name == "jax":
        import jax

        return jax.jit(fn)
    return fn


# The backends' errors for Python code that needs a traced tensor's value
# (`if tensor:`, `int(tensor)`), found by class name so that neither backend
# must be imported to recognize them.
_TRACED_VALUE_ERRORS = frozenset({
    "OperatorNotAllowedInGraphError",  # TensorFlow
    "ConcretizationTypeError",  # JAX, and its subclasses below
    "TracerBoolConversionError",
    "TracerIntegerConversionError",
    "TracerArrayConversionError",
})


def reads_traced_value(error):
    """Whether `error` was raised by Python code that branched on, or
    converted, a tensor's value inside a `jit_compile`d function."""
    return any(cls.__name__ in _TRACED_VALUE_ERRORS for cls in type(error).__mro__)


def assigning_function(fn):
    """Runs `fn`, a function that assigns Keras variables, in one call.

    Args:
        fn: a function of tensors (nested lists of them) that assigns
            variables it closes over and returns nothing. As with
            `jit_compile`: no Python branching on tensor values.

    Returns:
        On TensorFlow, `tf.function(fn)`: one graph call instead of an eager
        op dispatch per assign (a mask update assigns a mask, the weights
        and their optimizer slots for every kernel). The variables are
        captured when it is traced, so build a new one when the set of
        variables changes. Elsewhere `fn` itself: JAX assigns variables
        outside `jax.jit`.
    """
    if backend_name() == "tensorflow":
        tf = require_tensorflow("assigning masks")
        return tf.function(fn, autograph=False)
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


def _tensorflow_seed(seed_generator):
    tf = require_tensorflow("random noise")
    seed = seed_generator.next()
    return tf.cast(tf.math.floormod(seed, 2**31 - 2), "int32")


def random_uniform(shape, seed_generator, dtype="float32", minval=0.0, maxval=1.0):
    """`keras.random.uniform` drawing from a `SeedGenerator`, fast under XLA.

    On TensorFlow, Keras lets `stateless_uniform` auto-select its algorithm,
    which with a traced seed under `jit_compile=True` on CPU takes
    ~90 ms for 235k numbers (50x slower than Philox); the Philox
    algorithm is asked for explicitly instead.
    """
    if backend_name() == "tensorflow" and isinstance(seed_generator, keras.random.SeedGenerator):
        tf = require_tensorflow("random noise")
        return tf.random.stateless_uniform(
            shape, seed=_tensorflow_seed(seed_generator), minval=minval,
            maxval=maxval, dtype=dtype, alg="philox",
        )
    return keras.random.uniform(shape, minval=minval, maxval=maxval, dtype=dtype, seed=seed_generator)


def random_normal(shape, seed_generator, dtype="float32"):
    """`keras.random.normal` drawing from a `SeedGenerator` (see `random_uniform`)."""
    if backend_name() == "tensorflow" and isinstance(seed_generator, keras.random.SeedGenerator):
        tf = require_tensorflow("random noise")
        return tf.random.stateless_normal(
            shape, seed=_tensorflow_seed(seed_generator), dtype=dtype, alg="philox"
        )
    return keras.random.normal(shape, dtype=dtype, seed=seed_generator)
