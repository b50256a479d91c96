"""Direct tests of `tf_sparsity.copying.copy_model`: copying a live model
object by object (what `strip` falls back to when a model's config cannot
rebuild it)."""

import threading
import types

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import tf_sparsity as tfs
from tests import models
from tf_sparsity import copying
from tf_sparsity import tree

pytestmark = pytest.mark.core


def numpy(x):
    return ops.convert_to_numpy(x)


def all_layers(model):
    return [model] + [node.layer for node in tree.walk(model)]


def assert_independent_copy(original, copy, x):
    """Same outputs, variables and structure; no object or variable shared."""
    assert type(copy) is type(original)
    assert copy is not original
    np.testing.assert_array_equal(numpy(copy(x)), numpy(original(x)))
    assert [v.path for v in copy.weights] == [v.path for v in original.weights]
    for a, b in zip(original.weights, copy.weights):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    assert not {id(v) for v in copy.weights} & {id(v) for v in original.weights}
    original_layers = {id(layer) for layer in all_layers(original)}
    assert not any(id(layer) in original_layers for layer in all_layers(copy))
    assert [type(l) for l in all_layers(copy)] == [type(l) for l in all_layers(original)]
    # Each copied layer's tracker describes the copy's own objects.
    for old, new in zip(all_layers(original), all_layers(copy)):
        tracker = new._tracker
        assert tracker is not old._tracker
        for name, (_, store) in tracker.config.items():
            assert tracker.stored_ids[name] == {id(item) for item in store}, name
            assert store is not old._tracker.config[name][1]
            assert len(store) == len(old._tracker.config[name][1])


def assert_values_independent(original, copy, x):
    """Changing one model's variables leaves the other's outputs alone."""
    expected = numpy(copy(x))
    for variable in original.trainable_weights:
        variable.assign(ops.zeros(variable.shape, variable.dtype))
    np.testing.assert_array_equal(numpy(copy(x)), expected)
    for variable in copy.trainable_weights:
        variable.assign(ops.ones(variable.shape, variable.dtype))
    for variable in original.trainable_weights:
        assert not np.any(numpy(variable))


def test_copy_of_a_subclassed_model_is_equal_and_independent(rng):
    model = models.subclassed()
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    copy = copying.copy_model(model)
    assert_independent_copy(model, copy, x)
    assert copy.name == model.name
    assert copy.units == model.units and copy.num_blocks == model.num_blocks
    assert isinstance(copy.blocks[1], models.Block)
    assert isinstance(copy.attention._query_dense, layers.EinsumDense)
    assert_values_independent(model, copy, x)


def test_copy_of_an_unregistered_subclassed_model_without_config(rng):
    class Net(keras.Model):  # never registered, no get_config
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.hidden = layers.Dense(units, activation="relu")
            self.out = layers.Dense(3)
            self.note = {"tags": ["a", "b"], "scale": np.float32(0.5)}

        def call(self, x):
            return self.out(self.hidden(x))

        def halved(self, x):
            return self(x) * self.note["scale"]

    model = Net(12, name="net")
    x = rng.normal(size=(4, 7)).astype("float32")
    model(x)
    # Its config cannot rebuild it: the reason `strip` needs copy_model.
    with pytest.raises((NotImplementedError, TypeError)):
        Net.from_config(model.get_config())
    copy = copying.copy_model(model)
    assert_independent_copy(model, copy, x)
    assert copy.units == 12
    np.testing.assert_array_equal(numpy(copy.halved(x)), numpy(model.halved(x)))
    # Plain Python state is copied, not shared.
    assert copy.note == model.note and copy.note is not model.note
    copy.note["tags"].append("c")
    assert model.note["tags"] == ["a", "b"]
    assert_values_independent(model, copy, x)


def test_copy_preserves_sharing_inside_the_model(rng):
    class Shared(keras.Model):
        def __init__(self):
            super().__init__()
            self.shared = layers.Dense(6, activation="tanh", name="shared")
            self.again = [self.shared]
            self.out = layers.Dense(2, name="out")
            # A plain (non-Keras) object holding a layer, and a module.
            self.helper = types.SimpleNamespace(layer=self.shared)
            self.backend = np

        def call(self, x):
            return self.out(self.again[0](self.shared(x)))

    model = Shared()
    x = rng.normal(size=(3, 6)).astype("float32")
    model(x)
    copy = copying.copy_model(model)
    assert_independent_copy(model, copy, x)
    assert copy.again[0] is copy.shared
    assert copy.helper.layer is copy.shared and copy.helper is not model.helper
    assert copy.shared.kernel is copy.again[0].kernel
    assert copy.backend is np  # modules are code: shared
    assert len(copy.weights) == len(model.weights) == 4


def test_copy_of_functional_and_sequential_models(rng):
    for build, shape in [
        (models.functional_with_nested, (3, 8)),
        (models.sequential, (3, 8)),
        (models.functional_with_attention, (2, 5, 6)),
    ]:
        model = build()
        x = rng.normal(size=shape).astype("float32")
        copy = copying.copy_model(model)
        assert_independent_copy(model, copy, x)
        # The copy's graph runs the copy's layers.
        graph = copy._functional if isinstance(copy, keras.Sequential) else copy
        originals = {id(layer) for layer in model.layers}
        assert not any(id(op) in originals for op in graph.operations)
        for nodes in graph._nodes_by_depth.values():
            assert not any(id(node.operation) in originals for node in nodes)
        assert [l.name for l in copy.layers] == [l.name for l in model.layers]


def test_copy_leaves_training_state_behind_and_trains_on_its_own(rng):
    model = models.sequential()
    x = rng.normal(size=(16, 8)).astype("float32")
    y = rng.normal(size=(16, 4)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    model.spare_optimizer = keras.optimizers.SGD()
    optimizer = model.optimizer
    copy = copying.copy_model(model)
    assert not copy.compiled
    assert copy.optimizer is None
    assert copy.train_function is None and copy.predict_function is None
    assert copy.spare_optimizer is None  # any optimizer is left behind
    # The original is untouched and keeps training.
    assert model.compiled and model.optimizer is optimizer
    assert model.train_function is not None
    np.testing.assert_array_equal(numpy(copy(x)), numpy(model(x)))
    # The copy compiles and trains without moving the original.
    snapshot = [numpy(v) for v in model.weights]
    copy.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    copy.fit(x, y, epochs=1, verbose=0)
    for variable, value in zip(model.weights, snapshot):
        np.testing.assert_array_equal(numpy(variable), value)
    assert not np.allclose(numpy(copy(x)), numpy(model(x)))
    model.fit(x, y, epochs=1, verbose=0)


def test_copy_of_a_sparse_model_keeps_its_wrappers(rng):
    model = models.subclassed()
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, frequency=1)))
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    copy = copying.copy_model(model)
    assert_independent_copy(model, copy, x)
    original_wrappers = tfs.sparse_layers(model)
    copied_wrappers = tfs.sparse_layers(copy)
    assert [p for p, _ in copied_wrappers] == [p for p, _ in original_wrappers]
    for (_, a), (_, b) in zip(original_wrappers, copied_wrappers):
        assert isinstance(b, tfs.SparseWrapper) and b is not a
        assert type(b.layer) is type(a.layer) and b.layer is not a.layer
    assert copy.attention._query_dense is dict(copied_wrappers)["attention/query"]
    # Masks and every other variable are the copy's own.
    assert len(copy.weights) == len(model.weights)


def test_an_uncopyable_object_is_a_value_error_naming_the_model(rng):
    class Locked(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(2)
            self.lock = threading.Lock()

        def call(self, x):
            return self.dense(x)

    model = Locked(name="locked")
    x = rng.normal(size=(2, 3)).astype("float32")
    before = numpy(model(x))
    with pytest.raises(
        ValueError, match=r"Cannot copy model 'locked' \(Locked\): TypeError: .*lock"
    ):
        copying.copy_model(model)
    # The model itself is unharmed.
    np.testing.assert_array_equal(numpy(model(x)), before)
    assert isinstance(model.dense, layers.Dense)


def test_strip_of_an_unrebuildable_model_goes_through_the_copy(rng):
    class Net(keras.Model):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.hidden = layers.Dense(units, activation="relu")
            self.out = layers.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x))

    model = Net(8)
    x = rng.normal(size=(3, 5)).astype("float32")
    model(x)
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, frequency=1)))
    plain = tfs.strip(model)
    assert type(plain) is Net and plain is not model
    assert tfs.sparse_layers(plain) == []
    assert len(tfs.sparse_layers(model)) == 2  # the sparse model is untouched
    np.testing.assert_allclose(numpy(plain(x)), numpy(model(x)), rtol=1e-6)
    assert not {id(v) for v in plain.weights} & {id(v) for v in model.weights}
