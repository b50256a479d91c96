"""RigL: rigging the lottery (Evci et al., 2020)."""

import keras
from keras import ops

from tf_sparsity.methods import base
from tf_sparsity.methods import dynamic_sparse


@keras.saving.register_keras_serializable(package=base.PACKAGE)
class RigL(dynamic_sparse.DynamicSparseMethod):
    """Sparse from step 0; periodically drops the smallest active weights
    and grows the inactive ones whose dense gradient is largest.

    The dense gradient (with respect to the effective kernel, pruned
    positions included) comes from the training step itself, through the
    masked methods' gradient capability (`needs_gradient`, see
    `MaskedMethod`): no second backward pass; an update uses the gradient
    of the step just before it. Optimizers with
    `gradient_accumulation_steps` are refused: for the recording variables
    Keras keeps a running elementwise maximum, not the gradient (use SET
    there).

    Its arguments are those of `DynamicSparseMethod`: `sparsity`,
    `update_frequency`, `drop_fraction`, `drop_fraction_decay`,
    `end_step`, `seed`, `structure` and `scope`. With
    `structure=tfs.Block(...)` a block's grow score is its mean |gradient|.
    """

    name = "rigl"
    needs_gradient = True

    def grow_scores(self, kernel, step):
        return ops.abs(self.gradient(kernel))
