"""Sparsity methods, one per module, and their registry."""

from tf_sparsity.methods.base import PruningMethod
from tf_sparsity.methods.base import RegularizedMethod
from tf_sparsity.methods.base import SparsityMethod
from tf_sparsity.methods.l0 import L0Regularization
from tf_sparsity.methods.magnitude import MagnitudePruning
from tf_sparsity.methods.random_pruning import RandomPruning
from tf_sparsity.methods.variational_dropout import VariationalDropout

# Adding a method: one new module, one line here.
REGISTRY = {
    MagnitudePruning.name: MagnitudePruning,
    RandomPruning.name: RandomPruning,
    VariationalDropout.name: VariationalDropout,
    L0Regularization.name: L0Regularization,
}


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
