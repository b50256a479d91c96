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
    positions included) comes from the training step itself, with no second
    backward pass: each kernel has a zero-valued `dense_grad` variable
    added to its forward pass as `g - stop_gradient(g)` (no change to the
    value), marked `overwrite_with_gradient`, so the optimizer stores the
    step's gradient in it instead of updating it (no optimizer slots). Under
    `tf.distribute` it is averaged across replicas (aggregation "mean"). An
    update uses the gradient of the step just before it. Costs: one
    kernel-sized variable and, under a multi-device strategy, one more
    kernel-sized all-reduce per step. Under a `LossScaleOptimizer` it holds
    the loss-scaled gradient (Keras unscales only the gradients it applies),
    which ranks the weights of a kernel the same way. Optimizers with
    `gradient_accumulation_steps` are refused: for these variables Keras
    keeps a running elementwise maximum, not the gradient.

    Args: those of `DynamicSparseMethod` (`sparsity`, `update_frequency`,
        `drop_fraction`, `drop_fraction_decay`, `end_step`, `seed`).
    """

    name = "rigl"

    def build(self, wrapper, attribute, kernel):
        state = super().build(wrapper, attribute, kernel)
        gradient = wrapper.add_weight(
            name=f"{attribute.lstrip('_')}_dense_grad",
            shape=kernel.shape,
            dtype=kernel.dtype,
            initializer="zeros",
            trainable=True,
            aggregation="mean",
        )
        gradient.overwrite_with_gradient = True
        state["dense_grad"] = gradient
        return state

    def training_kernel(self, wrapper, attribute, kernel):
        sparse = self.inference_kernel(wrapper, attribute, kernel)
        gradient = ops.convert_to_tensor(wrapper.sparsity_variables[attribute]["dense_grad"])
        # Zero in value; its gradient is the loss's gradient w.r.t. the
        # effective kernel at every position.
        return sparse + ops.cast(gradient - ops.stop_gradient(gradient), sparse.dtype)

    def check_optimizer(self, optimizer):
        if getattr(optimizer, "gradient_accumulation_steps", None):
            raise ValueError(
                f"RigL cannot read the dense gradient with optimizer "
                f"'{optimizer.name}' (gradient_accumulation_steps="
                f"{optimizer.gradient_accumulation_steps}): Keras then stores "
                "an elementwise running maximum in `overwrite_with_gradient` "
                "variables instead of the gradient. Train without gradient "
                "accumulation, or use SET."
            )

    def growth_scores(self, entry, step):
        return ops.abs(ops.convert_to_tensor(entry.state("dense_grad")))
