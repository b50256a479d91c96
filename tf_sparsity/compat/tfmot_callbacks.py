"""tfmot's pruning callbacks (`UpdatePruningStep`, `PruningSummaries`) on
tf_sparsity's `SparsityCallback` and mask updater."""

import os

import keras
import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity.callbacks import SparsityCallback
from tf_sparsity.compat.tfmot_pruning import TfmotMagnitudePruning
from tf_sparsity.sparsify import sparse_kernels


class UpdatePruningStep(SparsityCallback):
    """Updates the masks of layers pruned with `prune_low_magnitude`, as
    tfmot's `UpdatePruningStep`.

    A `tfs.SparsityCallback` (masks recomputed before the training steps
    the schedules choose; `sparsity` and `target_sparsity` added to the
    epoch logs) that also follows tfmot's calling conventions and epoch end:

    - in `model.fit`, the step is `optimizer.iterations`, as for
      `tfs.SparsityCallback`; tfmot's pruning step is that plus 1 (the
      schedules translate);
    - called by hand in a custom training loop (`set_model`,
      `on_train_begin()`, then `on_train_batch_begin(batch)` before each
      step, possibly with `batch=-1`, as tfmot's guide does), the step is
      read from `model.optimizer.iterations` before each step;
    - at the end of every epoch the pruned weights are set to zero, so the
      model's weights are the pruned ones when it is saved (tfmot's
      `weights = weights * mask`).

    Unlike tfmot, the step comes from the optimizer rather than from a
    counter in each layer: a model recompiled with a new optimizer starts
    its schedule again.
    """

    def __init__(self):
        super().__init__(log_dir=None)
        self._step_from_optimizer = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        # Until `fit` announces an epoch, batches come from a hand-written loop.
        self._step_from_optimizer = True

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._step_from_optimizer = False

    def on_train_batch_begin(self, batch, logs=None):
        if self._updater is None:
            raise RuntimeError(
                "UpdatePruningStep: call `on_train_begin()` before the first "
                "`on_train_batch_begin` (after `set_model(model)`), as tfmot's "
                "custom training loop guide does."
            )
        super().on_train_batch_begin(batch, logs)

    def step_of(self, batch):
        if self._step_from_optimizer or batch < 0:
            return int(ops.convert_to_numpy(self.model.optimizer.iterations))
        return super().step_of(batch)

    def on_epoch_end(self, batch, logs=None):
        """Logs the sparsity and sets pruned weights to zero.

        Args:
            batch: the epoch index (tfmot names this argument `batch`; its
                guide calls `on_epoch_end(batch=...)`).
            logs: the epoch's logs, which get `sparsity` and
                `target_sparsity`.
        """
        super().on_epoch_end(batch, logs)
        model = self.model  # On JAX, reading the model syncs its variables first.
        for kernel in sparse_kernels(model):
            if isinstance(kernel.method, TfmotMagnitudePruning):
                kernel.method.keep_masked_zeros(kernel)


class PruningSummaries(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback plus each pruned kernel's sparsity, as
    tfmot's `PruningSummaries`.

    At the start of every epoch, `1 - mean(mask)` of every pruned kernel is
    written to `log_dir/metrics` as `<mask variable path>/sparsity` (e.g.
    `dense/kernel_mask/sparsity`), at step `optimizer.iterations`. tfmot also
    logs each layer's pruning threshold; tf_sparsity keeps no threshold, so
    none is logged. Needs TensorBoard (TensorFlow).

    Args:
        log_dir: the TensorBoard log directory (a non-empty string).
        update_freq: as for `keras.callbacks.TensorBoard` ("epoch").
        **kwargs: other `keras.callbacks.TensorBoard` arguments.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(
                "`log_dir` must be a non-empty string. You passed `log_dir`="
                f"{log_dir}."
            )
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        tf = _backend.require_tensorflow("PruningSummaries")
        self._pruning_writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "metrics"))

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        tf = _backend.require_tensorflow("PruningSummaries")
        model = self.model
        step = int(ops.convert_to_numpy(model.optimizer.iterations))
        with self._pruning_writer.as_default(step=step):
            for kernel in sparse_kernels(model):
                mask = getattr(kernel.state, "mask", None)
                if mask is not None:
                    sparsity = 1.0 - float(np.mean(ops.convert_to_numpy(mask)))
                    tf.summary.scalar(f"{mask.path}/sparsity", sparsity)
        self._pruning_writer.flush()
