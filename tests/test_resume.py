"""A run interrupted and resumed ends with the same masks as one that was not."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tests import models

pytestmark = pytest.mark.core


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_step:
            raise RuntimeError("simulated preemption")


def make_model():
    keras.utils.set_random_seed(7)
    schedule = tfs.PolynomialDecay(0.0, 0.9, begin_step=3, end_step=40, frequency=3)
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(schedule))
    sparse.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=True)
    return sparse


def final_state(model):
    return [ops.convert_to_numpy(v).copy() for v in model.weights]


def test_backup_and_restore_resume_matches_an_uninterrupted_run(tmp_path, rng):
    x = rng.normal(size=(96, 8)).astype("float32")
    y = rng.normal(size=(96, 4)).astype("float32")
    fit = dict(x=x, y=y, batch_size=16, epochs=8, shuffle=False, verbose=0)

    reference = make_model()
    reference.fit(callbacks=[tfs.SparsityCallback()], **fit)

    backup = str(tmp_path / "backup")
    interrupted = make_model()
    with pytest.raises(RuntimeError, match="preemption"):
        interrupted.fit(
            callbacks=[
                tfs.SparsityCallback(),
                keras.callbacks.BackupAndRestore(backup),
                Interrupt(at_step=27),  # mid-epoch 5 (6 steps per epoch)
            ],
            **fit,
        )
    resumed = make_model()  # A fresh process would rebuild the model too.
    resumed.fit(
        callbacks=[keras.callbacks.BackupAndRestore(backup), tfs.SparsityCallback()],
        **fit,
    )
    assert int(ops.convert_to_numpy(resumed.optimizer.iterations)) == 48
    for expected, actual, variable in zip(final_state(reference), final_state(resumed), reference.weights):
        if variable.path.endswith("_mask"):
            np.testing.assert_array_equal(actual, expected, err_msg=variable.path)
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=variable.path)
    report = tfs.sparsity_summary(resumed, print_fn=None)
    assert report.global_sparsity == pytest.approx(0.9, abs=5e-3)
