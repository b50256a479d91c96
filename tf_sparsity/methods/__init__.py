"""Sparsity methods, one per module, and their registry."""

import importlib

from tf_sparsity import _validation as validate
from tf_sparsity import method_names
from tf_sparsity.methods.base import MaskedMethod
from tf_sparsity.methods.base import MaskState
from tf_sparsity.methods.dynamic_sparse import DynamicSparseMethod
from tf_sparsity.methods.base import PruningMethod
from tf_sparsity.methods.base import RegularizedMethod
from tf_sparsity.methods.base import SparsityMethod
from tf_sparsity.methods.fixed_mask import FixedMask
from tf_sparsity.methods.l0 import L0Regularization
from tf_sparsity.methods.magnitude import MagnitudePruning
from tf_sparsity.methods.random_pruning import RandomPruning
from tf_sparsity.methods.rigl import RigL
from tf_sparsity.methods.set import SET
from tf_sparsity.methods.variational_dropout import VariationalDropout

__all__ = [
    "DynamicSparseMethod",
    "MaskState",
    "FixedMask",
    "L0Regularization",
    "MagnitudePruning",
    "MaskedMethod",
    "PruningMethod",
    "RandomPruning",
    "RegularizedMethod",
    "RigL",
    "SET",
    "SparsityMethod",
    "VariationalDropout",
    "REGISTRY",
    "get",
    "make",
]

def _load_registry():
    registry = {}
    for name, path in method_names.METHOD_CLASSES.items():
        module, class_name = path.split(":")
        registry[name] = getattr(importlib.import_module(module), class_name)
        if registry[name].name != name:
            raise RuntimeError(f"{path}.name is {registry[name].name!r}, registered as {name!r}")
    return registry


# Name -> class of every method (`tfs.METHODS`); see `tf_sparsity.method_names`.
REGISTRY = _load_registry()
"""`{name: method class}` of every method in `method_names.py` (`tfs.METHODS`)."""


def get(identifier):
    """Returns a method from an instance or a serialized config."""
    if isinstance(identifier, SparsityMethod):
        return identifier
    if isinstance(identifier, dict):
        import keras

        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str) and identifier in REGISTRY:
        raise TypeError(
            f"Method '{identifier}' needs its settings: pass an instance, e.g. "
            f"tfs.{REGISTRY[identifier].__name__}(...)."
        )
    raise TypeError(
        "Expected a sparsity method such as tfs.MagnitudePruning(schedule), "
        f"got {identifier!r}. Known methods: {sorted(REGISTRY)}."
    )


def make(name, sparsity, total_steps, num_examples=None, **overrides):
    """A configured method from its name: the one factory of the commands,
    the demo, sweeps and benchmarks.

    Args:
        name: a key of `tfs.METHODS` ("magnitude", "random",
            "variational_dropout", "l0", ...).
        sparsity: the target sparsity at the end of training (recorded only
            by methods that learn their sparsity).
        total_steps: training steps of the run (places the schedule).
        num_examples: training-set size (sets regularizer weights).
        **overrides: `seed`, the schedule (`begin_step`, `end_step`,
            `frequency`) and constructor arguments.

    Returns:
        A `SparsityMethod`.

    Raises:
        ValueError: unknown name, or an argument the method rejects.
        TypeError: `total_steps` or `num_examples` is not an int.
    """
    if name not in REGISTRY:
        raise ValueError(
            f"Unknown sparsity method {name!r} (known: {', '.join(sorted(REGISTRY))})."
        )
    owner = f"make_method({name!r})"
    total_steps = validate.integer(owner, "total_steps", total_steps, minimum=1)
    if num_examples is not None:
        # Regularizer weights are set to a factor / num_examples.
        num_examples = validate.integer(owner, "num_examples", num_examples, minimum=1)
    try:
        return REGISTRY[name].recipe(
            sparsity, total_steps, num_examples=num_examples, **overrides
        )
    except TypeError as error:
        raise ValueError(f"Method {name!r}: {error}") from None
