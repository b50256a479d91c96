"""Random pruning: the paper's baseline, on the same schedule as magnitude."""

import keras

from tf_sparsity import _validation as validate
from tf_sparsity.methods import base


@keras.saving.register_keras_serializable(package=base.PACKAGE)
class RandomPruning(base.PruningMethod):
    """Prunes weights chosen at random, following a sparsity schedule.

    Every kernel gets one fixed random priority per weight, drawn from
    `seed` and the kernel's path; each update prunes the lowest priorities.
    The pruned set therefore only grows (pruned weights stay pruned), masks
    are identical on every replica and after a resume, and no random state
    needs saving.

    Args:
        schedule: a `SparsitySchedule`.
        seed: int; None draws one now (and records it in the config).
        scope: "layer" or "global" (see `MagnitudePruning`).
        structure: `tfs.Unstructured()` (default), `tfs.Block((rows, cols))`
            (random blocks) or `tfs.NM(n, m)` (random n of every m).
    """

    name = "random"

    uses_seed = True

    def __init__(self, schedule, seed=None, scope="layer", structure=None):
        super().__init__(schedule, scope=scope, structure=structure)
        self.seed = validate.seed_or_draw("RandomPruning", seed)

    def drop_scores(self, kernel, mask, seed):
        return keras.random.uniform(kernel.shape, seed=(self.seed + seed) % (2**31 - 1))

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
