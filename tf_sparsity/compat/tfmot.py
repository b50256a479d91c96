"""tensorflow-model-optimization's pruning API on tf_sparsity.

Change one import and tfmot pruning code runs on Keras 3 (TensorFlow or
JAX backend):

```python
# import tensorflow_model_optimization as tfmot
from tf_sparsity.compat import tfmot

model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
    model,
    pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step),
)
model_for_pruning.compile(...)
model_for_pruning.fit(..., callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
```

`tfmot.sparsity.keras` holds every name of tfmot's pruning API. Each maps
onto tf_sparsity's own classes: a pruned layer is a `tfs.SparseWrapper`
whose method is `TfmotMagnitudePruning` (a `tfs.MagnitudePruning`), the
schedules are `tfs.SparsitySchedule`s, `UpdatePruningStep` is a
`tfs.SparsityCallback` and `strip_pruning` is `tfs.strip`. Masks change on
the same training steps as under tfmot, to the same counts, and pruned
weights can grow back as in tfmot. What differs, and what is refused with
an error naming the tf_sparsity way, is listed in the migration guide
(`docs/migration_from_tfmot.md`).
"""

import types

from tf_sparsity.compat.tfmot_callbacks import PruningSummaries
from tf_sparsity.compat.tfmot_callbacks import UpdatePruningStep
from tf_sparsity.compat.tfmot_pruning import PrunableLayer
from tf_sparsity.compat.tfmot_pruning import PruneForLatencyOnXNNPack
from tf_sparsity.compat.tfmot_pruning import PruningPolicy
from tf_sparsity.compat.tfmot_pruning import TfmotBlock
from tf_sparsity.compat.tfmot_pruning import TfmotMagnitudePruning
from tf_sparsity.compat.tfmot_pruning import TfmotNM
from tf_sparsity.compat.tfmot_pruning import prune_low_magnitude
from tf_sparsity.compat.tfmot_pruning import prune_scope
from tf_sparsity.compat.tfmot_pruning import strip_pruning
from tf_sparsity.compat.tfmot_schedules import ConstantSparsity
from tf_sparsity.compat.tfmot_schedules import PolynomialDecay
from tf_sparsity.compat.tfmot_schedules import PruningSchedule

#: The names of `tfmot.sparsity.keras`, tfmot's public pruning API.
SPARSITY_KERAS_NAMES = (
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
)

__all__ = [
    *SPARSITY_KERAS_NAMES,
    "SPARSITY_KERAS_NAMES",
    "TfmotBlock",
    "TfmotMagnitudePruning",
    "TfmotNM",
]

_OTHER_TOOLKITS = {
    "quantization": (
        "tfmot.quantization has no tf_sparsity equivalent; Keras 3 quantizes "
        "models itself (`model.quantize('int8')`), after pruning and "
        "`strip_pruning`, and `tfs.export_litert` writes LiteRT models"
    ),
    "clustering": "tfmot.clustering (weight clustering) has no tf_sparsity equivalent",
    "experimental": (
        "tfmot.experimental (collaborative optimization) has no tf_sparsity "
        "equivalent"
    ),
}


def _missing(namespace, available):
    def __getattr__(name):
        reason = _OTHER_TOOLKITS.get(name) if namespace == "tfmot" else None
        if reason is None:
            reason = (
                f"{namespace}.{name} is not part of tfmot's pruning API that "
                f"tf_sparsity.compat.tfmot provides ({', '.join(available)})"
            )
        raise AttributeError(f"{reason}.")

    return __getattr__


sparsity = types.ModuleType(f"{__name__}.sparsity", "tfmot's `sparsity` namespace.")
sparsity.keras = types.ModuleType(
    f"{__name__}.sparsity.keras", "tfmot's pruning API (`tfmot.sparsity.keras`)."
)
for _name in SPARSITY_KERAS_NAMES:
    setattr(sparsity.keras, _name, globals()[_name])
sparsity.keras.__all__ = list(SPARSITY_KERAS_NAMES)
sparsity.keras.__getattr__ = _missing("tfmot.sparsity.keras", SPARSITY_KERAS_NAMES)
sparsity.__getattr__ = _missing("tfmot.sparsity", ("keras",))
__getattr__ = _missing("tfmot", ("sparsity",))
del _name
