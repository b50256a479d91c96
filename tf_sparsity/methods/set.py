"""SET: sparse evolutionary training (Mocanu et al., 2018)."""

import keras
import numpy as np

from tf_sparsity.methods import base
from tf_sparsity.methods import dynamic_sparse


@keras.saving.register_keras_serializable(package=base.PACKAGE)
class SET(dynamic_sparse.DynamicSparseMethod):
    """Sparse from step 0; periodically drops the smallest active weights
    and grows as many inactive ones at random.

    Growth is drawn from `seed`, the kernel's path in the model and the
    step, so every replica and every resumed run moves the same connections.

    Args:
        sparsity: the target sparsity, held from step 0 to the end.
        update_frequency: steps between drop-and-grow updates.
        drop_fraction: fraction of each kernel's active weights moved at an
            update, before decay.
        drop_fraction_decay: "cosine" (to 0 at `end_step`) or "constant".
        end_step: no update from this step on (None: none, with a
            "constant" decay).
        seed: int seed of the initial masks and of growth.
    """

    name = "set"

    def growth_scores(self, entry, step):
        rng = np.random.default_rng([self.seed, entry.seed, int(step)])
        return rng.random(tuple(entry.kernel.shape), dtype=np.float32)
