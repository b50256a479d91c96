import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import tf_sparsity as tfs

pytestmark = pytest.mark.core

CASES = [
    (lambda: layers.Dense(7, activation="relu"), (4, 5)),
    (lambda: layers.EinsumDense("abc,cd->abd", output_shape=(None, 6), bias_axes="d"), (2, 3, 5)),
    (lambda: layers.Conv1D(4, 3, padding="causal"), (2, 9, 3)),
    (lambda: layers.Conv2D(4, 3, strides=2), (2, 9, 9, 3)),
    (lambda: layers.Conv3D(2, 2), (1, 4, 4, 4, 2)),
    (lambda: layers.Conv2DTranspose(3, 3, strides=2), (2, 5, 5, 2)),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2), (2, 7, 7, 3)),
    (lambda: layers.SeparableConv2D(5, 3), (2, 7, 7, 3)),
    (lambda: layers.Embedding(11, 4), (3, 6)),
]


def _inputs(shape, rng):
    if len(shape) == 2 and shape == (3, 6):  # Embedding ids
        return rng.integers(0, 11, size=shape).astype("int32")
    return rng.normal(size=shape).astype("float32")


def _random_masks(wrapper, rng):
    chosen = {}
    for kernel in wrapper.kernels:
        mask = kernel.state.mask
        value = (rng.random(mask.shape) > 0.5).astype("float32")
        mask.assign(value)
        chosen[kernel.spec.attribute] = value
    return chosen


@pytest.mark.parametrize("make, shape", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_wrapper_computes_with_kernel_times_mask(make, shape, rng):
    x = _inputs(shape, rng)
    layer = make()
    layer(x)
    wrapper = tfs.SparseWrapper(layer, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))
    chosen = _random_masks(wrapper, rng)

    reference = make()
    reference(x)
    reference.set_weights(layer.get_weights())
    for attribute, mask in chosen.items():
        variable = getattr(reference, attribute)
        variable.assign(ops.convert_to_numpy(variable) * mask)

    expected = ops.convert_to_numpy(reference(x))
    np.testing.assert_allclose(ops.convert_to_numpy(wrapper(x)), expected, rtol=1e-5, atol=1e-5)
    # The wrapped layer's kernel variables are restored after each call.
    for kernel in wrapper.kernels:
        assert isinstance(getattr(layer, kernel.spec.attribute), keras.Variable)


def test_pruned_weights_get_no_gradient_and_biases_stay_dense(rng):
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.normal(size=(64, 3)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), layers.Dense(3)])
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(tfs.OneShot(0.6, step=0)))
    sparse.compile(keras.optimizers.SGD(0.1), "mse")
    wrapper = sparse.layers[0]
    tfs.update_masks(sparse, 0)
    mask = ops.convert_to_numpy(wrapper.kernels[0].state.mask)
    kernel_before = ops.convert_to_numpy(wrapper.layer.kernel).copy()
    bias_before = ops.convert_to_numpy(wrapper.layer.bias).copy()
    sparse.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tfs.SparsityCallback()])
    kernel_after = ops.convert_to_numpy(wrapper.layer.kernel)
    assert (mask == 0).sum() == 9  # round(0.6 * 15)
    # Pruned entries received zero gradient: unchanged raw values.
    np.testing.assert_array_equal(kernel_after[mask == 0], kernel_before[mask == 0])
    assert np.all(kernel_after[mask == 1] != kernel_before[mask == 1])
    assert np.all(ops.convert_to_numpy(wrapper.layer.bias) != bias_before)
    assert not wrapper.kernels[0].state.mask.trainable


def test_wrapper_rejects_unsupported_layers():
    bn = layers.BatchNormalization()
    bn.build((None, 3))
    with pytest.raises(ValueError, match="batch_normalization.*BatchNormalization"):
        tfs.SparseWrapper(bn, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))


def test_wrapper_rejects_lora_layers():
    dense = layers.Dense(4)
    dense.build((None, 8))
    dense.enable_lora(2)
    with pytest.raises(ValueError, match="LoRA"):
        tfs.SparseWrapper(dense, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5)))


def test_wrapper_round_trips_through_config():
    dense = layers.Dense(4, name="proj")
    dense.build((None, 8))
    wrapper = tfs.SparseWrapper(
        dense, tfs.RandomPruning(tfs.ConstantSparsity(0.5), seed=3), target_sparsity=0.25
    )
    config = keras.saving.serialize_keras_object(wrapper)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, tfs.SparseWrapper)
    assert restored.name == "proj"
    assert restored.target_sparsity == 0.25
    assert restored.method == wrapper.method
    assert restored.method.seed == 3
