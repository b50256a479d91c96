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

    Its arguments are those of `DynamicSparseMethod`: `sparsity`,
    `update_frequency`, `drop_fraction`, `drop_fraction_decay`,
    `end_step`, `seed`, `structure` and `scope`.
    """

    name = "set"

    def grow_scores(self, kernel, step):
        rng = np.random.default_rng([self.seed, kernel.seed, int(step)])
        return rng.random(kernel.shape, dtype=np.float32)
