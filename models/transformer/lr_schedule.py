"""tensor2tensor's Transformer learning rate:
`constant * min(1, step / warmup) * rsqrt(max(step, warmup)) * rsqrt(d_model)`
(t2t's "constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size")."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_sparsity_models")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then decay as the inverse square root of the step.

    Args:
        constant: the multiplier (t2t: 2.0).
        warmup_steps: steps of linear warm-up (t2t: 8000).
        hidden_size: the model width d_model.
    """

    def __init__(self, constant=2.0, warmup_steps=8000, hidden_size=512):
        self.constant = float(constant)
        self.warmup_steps = int(warmup_steps)
        self.hidden_size = int(hidden_size)

    def __call__(self, step):
        # Step 0 is the first update: count from 1 so it is not skipped.
        step = ops.cast(step, "float32") + 1.0
        warmup = float(self.warmup_steps)
        return (
            self.constant
            * ops.minimum(1.0, step / warmup)
            * ops.rsqrt(ops.maximum(step, warmup))
            * self.hidden_size**-0.5
        )

    def get_config(self):
        return {
            "constant": self.constant,
            "warmup_steps": self.warmup_steps,
            "hidden_size": self.hidden_size,
        }
