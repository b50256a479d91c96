"""VD and L0 on the shipped MNIST subset: sparse, accurate, distributed."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity_models.demo import run
from tests import models

pytestmark = [pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def dense_row():
    return run.train_lenet(None, epochs=20, verbose=0)[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["variational_dropout", "l0"])
def test_lenet_reaches_80_percent_within_3_points_of_dense(method, dense_row):
    _, sparse = run.train_lenet(method, epochs=20, verbose=0)
    assert sparse["global_sparsity"] >= 0.8, sparse["global_sparsity"]
    assert sparse["accuracy"] >= dense_row["accuracy"] - 0.03, (sparse["accuracy"], dense_row["accuracy"])


@pytest.mark.parametrize("method", [tfs.VariationalDropout(1e-2, seed=1), tfs.L0Regularization(1e-2, seed=1)])
def test_regularized_methods_train_under_mirrored_strategy(method, rng):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")],
        # Collective ops of several strategies in one test process can
        # collide ("Shape mismatch in the collective instance").
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )
    x = rng.normal(size=(128, 8)).astype("float32")
    y = rng.normal(size=(128, 4)).astype("float32")
    with strategy.scope():
        sparse = tfs.sparsify(models.sequential(), method)
        sparse.compile(keras.optimizers.Adam(1e-2), "mse")
    history = sparse.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert np.all(np.isfinite(history.history["loss"]))
    for _, wrapper in tfs.sparse_layers(sparse):
        for variable in wrapper.trainable_variables:
            replicas = [v.numpy() for v in strategy.experimental_local_results(variable.value)]
            np.testing.assert_allclose(replicas[0], replicas[1], err_msg=variable.path)
    plain = tfs.strip(sparse)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x)), ops.convert_to_numpy(sparse(x)), rtol=1e-5, atol=1e-6)
