"""Magnitude pruning (Zhu & Gupta, 2017): prune the smallest |w|."""

import keras
from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity.methods import base


@keras.saving.register_keras_serializable(package=base.PACKAGE)
class MagnitudePruning(base.PruningMethod):
    """Prunes the weights of smallest magnitude on a schedule.

    By default masks are permanent, as in the paper's reference code
    (tf.contrib.model_pruning): pruned weights get no gradient and are ranked
    below every live weight, so they stay pruned. With `regrowth=True`
    pruned weights keep receiving gradient updates (straight-through) and are
    ranked by their raw magnitude at the next update, so they can come back,
    which is close to what tfmot's `prune_low_magnitude` does.

    Args:
        schedule: a `SparsitySchedule`, e.g. `tfs.PolynomialDecay(...)`.
        scope: "layer" (a threshold per kernel) or "global" (one threshold
            over all sparsified kernels).
        regrowth: let pruned weights train and compete at the next update.
        structure: `tfs.Unstructured()` (default), `tfs.Block((rows, cols))`
            (a block's score is its mean |w|) or `tfs.NM(n, m)`.
    """

    name = "magnitude"

    def __init__(self, schedule, scope="layer", regrowth=False, structure=None):
        super().__init__(schedule, scope=scope, structure=structure)
        self.regrowth = validate.boolean("MagnitudePruning", "regrowth", regrowth)

    @property
    def permanent_masks(self):
        return not self.regrowth

    @property
    def can_keep_masked_zeros(self):
        # With regrowth, pruned weights train on and compete at updates.
        return not self.regrowth

    def training_kernel(self, kernel):
        sparse = super().training_kernel(kernel)
        if not self.regrowth:
            return sparse
        # Same value as kernel * mask, but gradients reach pruned weights too.
        dense = ops.convert_to_tensor(kernel.variable)
        return sparse + (dense - ops.stop_gradient(dense)) * ops.cast(
            1.0 - kernel.state.mask, dense.dtype
        )

    def get_config(self):
        return {**super().get_config(), "regrowth": self.regrowth}
