"""Cross-entropy with label smoothing on integer targets."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_sparsity_models")
class SmoothedCrossEntropy(keras.losses.Loss):
    """Token cross-entropy against smoothed one-hot targets, without
    materializing them: the true token gets `1 - smoothing`, every other
    `smoothing / (vocabulary - 1)` (tensor2tensor's smoothing).

    Padding is excluded through the sample weights the data gives (0 on
    padding), and the loss is averaged over the real tokens
    (`"mean_with_sample_weight"`).

    Args:
        smoothing: the label smoothing, in [0, 1).

    Input shape:
        `y_true` `(batch, length)` ints, `y_pred` `(batch, length,
        vocabulary)` logits.
    """

    def __init__(self, smoothing=0.1, name="smoothed_cross_entropy", reduction="mean_with_sample_weight"):
        super().__init__(name=name, reduction=reduction)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        vocabulary = ops.shape(logits)[-1]
        log_probs = ops.log_softmax(logits, axis=-1)
        true_log_prob = ops.take_along_axis(
            log_probs, ops.expand_dims(ops.cast(y_true, "int32"), -1), axis=-1
        )[..., 0]
        if not self.smoothing:
            return -true_log_prob
        low = self.smoothing / ops.cast(vocabulary - 1, "float32")
        confidence = 1.0 - self.smoothing
        total = ops.sum(log_probs, axis=-1)
        return -((confidence - low) * true_log_prob + low * total)

    def get_config(self):
        return {"smoothing": self.smoothing, "name": self.name, "reduction": self.reduction}
