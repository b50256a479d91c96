"""The paper's ResNet-50 learning-rate schedule."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_sparsity_models")
class WarmupPiecewiseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a constant rate cut by `decay_factor` at set epochs.

    The schedule of the reference code (`imagenet_train_eval.py`, the Cloud
    TPU ResNet's): the rate grows linearly from 0 to `peak_learning_rate`
    over `warmup_epochs`, stays there, and is multiplied by `decay_factor` at
    each epoch of `decay_epochs` (0.1 at epochs 30, 60 and 80). Epochs are
    fractional: `step / steps_per_epoch`.

    Args:
        peak_learning_rate: the rate after warm-up; the paper uses
            `0.1 * batch_size / 256`.
        steps_per_epoch: training examples per epoch over the global batch
            size (a float: 1,281,167 / 1024 for ImageNet at batch 1024).
        warmup_epochs: epochs of linear warm-up.
        decay_epochs: increasing epochs at which the rate is cut.
        decay_factor: what each cut multiplies the rate by.
    """

    def __init__(
        self,
        peak_learning_rate,
        steps_per_epoch,
        warmup_epochs=5.0,
        decay_epochs=(30, 60, 80),
        decay_factor=0.1,
    ):
        if peak_learning_rate <= 0:
            raise ValueError(
                f"peak_learning_rate must be positive, got {peak_learning_rate}"
            )
        if steps_per_epoch <= 0:
            raise ValueError(
                f"steps_per_epoch must be positive, got {steps_per_epoch}"
            )
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        decay_epochs = tuple(float(epoch) for epoch in decay_epochs)
        if list(decay_epochs) != sorted(decay_epochs):
            raise ValueError(
                f"decay_epochs must be increasing, got {decay_epochs}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.steps_per_epoch = float(steps_per_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.decay_epochs = decay_epochs
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        epoch = ops.divide(ops.cast(step, "float32"), self.steps_per_epoch)
        rate = ops.convert_to_tensor(self.peak_learning_rate, "float32")
        # One factor per cut already passed: decay_factor ** cuts.
        for boundary in self.decay_epochs:
            rate = ops.where(
                ops.greater_equal(epoch, boundary),
                ops.multiply(rate, self.decay_factor),
                rate,
            )
        if self.warmup_epochs > 0:
            warmup = ops.multiply(
                self.peak_learning_rate, ops.divide(epoch, self.warmup_epochs)
            )
            rate = ops.where(ops.less(epoch, self.warmup_epochs), warmup, rate)
        return rate

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_epochs": self.warmup_epochs,
            "decay_epochs": list(self.decay_epochs),
            "decay_factor": self.decay_factor,
        }
