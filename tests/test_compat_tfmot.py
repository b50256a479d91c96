"""`tf_sparsity.compat.tfmot`: tfmot's pruning API on tf_sparsity.

The code of tfmot's pruning guides (the Keras pruning example, the
comprehensive guide and the 2:4 guide) runs here with
`from tf_sparsity.compat import tfmot` in place of
`import tensorflow_model_optimization as tfmot`, on small data (scikit-learn's
8x8 digits instead of MNIST), and asserts what the guides show. Where Keras 3
itself needs a change (`.weights.h5` weight files, `import keras` instead of
`tf_keras`), the line says so. The side-by-side test trains the same models
with tfmot itself (tf_keras, in its own process) and checks that both give
the same masks at every step.
"""

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity.compat import tfmot


def masks_of(model):
    """Every pruned kernel's mask, as NumPy arrays, in model order."""
    return [ops.convert_to_numpy(kernel.state.mask) for kernel in tfs.sparse_kernels(model)]


def zeros_of(model):
    return [int((mask == 0).sum()) for mask in masks_of(model)]


class RecordMasks(keras.callbacks.Callback):
    """The masks after every training step, or after the chosen ones (read
    through `self.model`, which syncs the JAX trainer's state: a copy per
    step read).

    Args:
        steps: the training steps to record (None: all). `self.masks` lists
            them in order, `self.at` maps each step to its masks.
    """

    def __init__(self, steps=None):
        super().__init__()
        self.steps = steps
        self.masks = []
        self.at = {}
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.steps is None or self._step in self.steps:
            masks = masks_of(self.model)
            self.masks.append(masks)
            self.at[self._step] = masks
        self._step += 1


def tfmot_pruned_count(size, sparsity):
    """Weights tfmot prunes of `size` at `sparsity` (its float32 rounding)."""
    kept = max(int(np.rint(np.float32(size) * (np.float32(1.0) - np.float32(sparsity)))), 1)
    return size - kept


def digits():
    """scikit-learn's 8x8 digits as a small MNIST: (train, test) pairs of
    images scaled to [0, 1] and labels."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype("float32").reshape(-1, 8, 8)
    return (images[:1500], labels[:1500]), (images[1500:], labels[1500:])


def gzipped_size(path):
    """The Keras example's `get_gzipped_model_size(file)`."""
    _, zipped_file = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(zipped_file, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(path)
    return os.path.getsize(zipped_file)


# ---------------------------------------------------------------- schedules


@pytest.mark.core
def test_schedules_have_tfmot_arguments_and_defaults():
    polynomial = inspect.signature(tfmot.sparsity.keras.PolynomialDecay)
    assert list(polynomial.parameters) == [
        "initial_sparsity", "final_sparsity", "begin_step", "end_step", "power", "frequency"
    ]
    assert polynomial.parameters["power"].default == 3
    assert polynomial.parameters["frequency"].default == 100
    constant = inspect.signature(tfmot.sparsity.keras.ConstantSparsity)
    assert list(constant.parameters) == ["target_sparsity", "begin_step", "end_step", "frequency"]
    assert constant.parameters["end_step"].default == -1
    assert constant.parameters["frequency"].default == 100
    assert isinstance(tfmot.sparsity.keras.ConstantSparsity(0.5, 0), tfs.SparsitySchedule)


@pytest.mark.core
def test_polynomial_decay_answers_as_tfmot_at_the_next_pruning_step():
    # The Keras example's schedule: 2 epochs of 422 steps.
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=844
    )
    for pruning_step in (0, 1, 100, 421, 800, 844, 900):
        should_prune, sparsity = schedule(pruning_step)
        p = np.float32(min(max(pruning_step / 844, 0.0), 1.0))
        expected = np.float32(0.5 - 0.8) * np.float32(1 - p) ** np.float32(3) + np.float32(0.8)
        assert sparsity.dtype == np.float32 and abs(sparsity - expected) < 1e-7
        assert bool(should_prune) == (pruning_step % 100 == 0 and pruning_step <= 844)
    # Training step i runs at tfmot's pruning step i + 1 (pruning_step starts
    # at 0 and the wrapper adds 1 before each step): updates at 99, 199, ...
    updates = [i for i in range(900) if schedule.should_update(i)]
    assert updates == [99, 199, 299, 399, 499, 599, 699, 799]
    assert schedule.sparsity(99) == float(schedule(100)[1])
    assert schedule.last_update_step(843) == 799 and schedule.final_update_step == 799
    assert schedule.last_update_step(98) is None
    # tfmot has no update at end_step off the frequency grid: it ends a
    # little below final_sparsity.
    assert 0.79 < schedule.sparsity(799) < 0.8
    assert schedule.due_update(150, 420) == 399 and schedule.due_update(400, 420) is None


@pytest.mark.core
def test_constant_sparsity_answers_as_tfmot():
    forever = tfmot.sparsity.keras.ConstantSparsity(0.5, 0)
    assert [i for i in range(350) if forever.should_update(i)] == [99, 199, 299]
    assert forever.final_update_step is None and forever.final_sparsity == 0.5
    bounded = tfmot.sparsity.keras.ConstantSparsity(0.25, begin_step=3, end_step=13, frequency=5)
    assert [i for i in range(30) if bounded.should_update(i)] == [2, 7, 12]
    assert bounded.final_update_step == 12 and bounded.last_update_step(29) == 12
    assert bounded.sparsity(7) == np.float32(0.25)
    should_prune, sparsity = bounded(8)
    assert bool(should_prune) and sparsity == np.float32(0.25)


@pytest.mark.core
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: s.ConstantSparsity(0.5, -1), "begin_step should be >= 0"),
        (lambda s: s.ConstantSparsity(0.5, 10, end_step=5), "begin_step should be <= end_step"),
        (lambda s: s.ConstantSparsity(0.5, 0, end_step=-2), "end_step can be -1 or >= 0"),
        (lambda s: s.ConstantSparsity(1.0, 0), r"target_sparsity must be in range \[0,1\)"),
        (lambda s: s.ConstantSparsity(0.5, 0, frequency=0), "frequency should be > 0"),
        (lambda s: s.PolynomialDecay(0.0, 0.5, 0, -1), "end_step cannot be -1"),
        (lambda s: s.PolynomialDecay(0.0, 1.5, 0, 10), r"final_sparsity must be in range \[0,1\)"),
    ],
)
def test_schedules_refuse_what_tfmot_refuses(make, message):
    with pytest.raises(ValueError, match=message):
        make(tfmot.sparsity.keras)


@pytest.mark.core
def test_schedule_configs_are_tfmot_s_and_round_trip():
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.7, 5, 95, power=2, frequency=10)
    config = schedule.get_config()
    assert config == {
        "class_name": "PolynomialDecay",
        "config": {
            "initial_sparsity": 0.1, "final_sparsity": 0.7, "power": 2,
            "begin_step": 5, "end_step": 95, "frequency": 10,
        },
    }
    assert tfmot.sparsity.keras.PolynomialDecay.from_config(config) == schedule
    assert tfmot.sparsity.keras.PolynomialDecay.from_config(config["config"]) == schedule
    constant = tfmot.sparsity.keras.ConstantSparsity(0.3, 2, 40, 7)
    for original in (schedule, constant):
        config = keras.saving.serialize_keras_object(original)
        restored = keras.saving.deserialize_keras_object(config)
        assert restored == original and type(restored) is type(original)


class EveryThirdStep(tfmot.sparsity.keras.PruningSchedule):
    """A schedule written by a user, as for tfmot: 25% then 50%."""

    def __init__(self, begin_step, end_step):
        self.begin_step = begin_step
        self.end_step = end_step

    def __call__(self, step):
        sparsity = 0.25 if step < 6 else 0.5
        return self._should_prune_in_step(step, self.begin_step, self.end_step, 3), sparsity

    def get_config(self):
        return {
            "class_name": "EveryThirdStep",
            "config": {"begin_step": self.begin_step, "end_step": self.end_step},
        }


@pytest.mark.core
def test_user_pruning_schedule_drives_training():
    schedule = EveryThirdStep(begin_step=3, end_step=9)
    assert schedule.final_sparsity == 0.5  # Read at its end_step.
    with pytest.raises(TypeError):
        tfmot.sparsity.keras.PruningSchedule()  # Abstract, as in tfmot.
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile("sgd", "mse")
    record = RecordMasks()
    x = np.random.default_rng(0).normal(size=(48, 8)).astype("float32")
    pruned.fit(x, x[:, :1] * np.ones((1, 10)), batch_size=4, epochs=1, shuffle=False, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), record])
    zeros = [int((masks[0] == 0).sum()) for masks in record.masks]
    # Pruning steps 3, 6, 9 are training steps 2, 5, 8.
    assert zeros == [0, 0, 20, 20, 20, 40, 40, 40, 40, 40, 40, 40]


@pytest.mark.core
def test_user_schedule_without_a_final_sparsity_is_a_clear_error():
    class Broken(tfmot.sparsity.keras.PruningSchedule):
        def __call__(self, step):
            raise RuntimeError("no")

        def get_config(self):
            return {"class_name": "Broken", "config": {}}

    with pytest.raises(ValueError, match=r"set `self.final_sparsity = \.\.\.`"):
        tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(3), pruning_schedule=Broken())


# ---------------------------------------------------------------- behaviour


def train_and_record(pruned, x, y, batch_size, epochs=1, **compile_args):
    pruned.compile(**{"optimizer": "sgd", "loss": "mse", **compile_args})
    record = RecordMasks()
    pruned.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), record])
    return record.masks


@pytest.mark.core
def test_masks_change_on_tfmot_steps_to_tfmot_counts():
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        0.2, 0.9, begin_step=2, end_step=27, frequency=4
    )
    model = keras.Sequential([
        keras.Input((15,)), keras.layers.Dense(7, activation="relu"), keras.layers.Dense(3)
    ])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 15)).astype("float32")
    masks = train_and_record(pruned, x, rng.normal(size=(120, 3)).astype("float32"), 4)
    expected, current = [], [0, 0]
    for step in range(30):
        should_prune, sparsity = schedule(step + 1)
        if should_prune:
            current = [tfmot_pruned_count(size, sparsity) for size in (105, 21)]
        expected.append(current)
    assert [[int((m == 0).sum()) for m in step] for step in masks] == expected
    changed = [
        i for i in range(1, 30) if any((a != b).any() for a, b in zip(masks[i - 1], masks[i]))
    ]
    # Pruning steps 2, 6, ..., 26; the counts grow at all but the last.
    assert [1 + 4 * k for k in range(6)] <= changed
    assert set(changed) <= {1 + 4 * k for k in range(7)}


@pytest.mark.core
def test_pruned_weights_grow_back_as_in_tfmot():
    # One input carries all the signal, and its weight is the smallest: it
    # is pruned at the first update, trains on (tfmot's straight-through
    # gradient), and is large again at the next update.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.array([[0.1], [0.2], [1.0], [2.0]], "float32")])
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=1, frequency=2)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    x = np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], "float32"), (4, 1))
    masks = train_and_record(pruned, x, np.full((4, 1), 10.0, "float32"), 1,
                             optimizer=keras.optimizers.SGD(0.2))
    assert [m[0][:, 0].tolist() for m in masks] == [
        [0, 0, 1, 1],  # Step 0 (pruning step 1): the two smallest go.
        [0, 0, 1, 1],
        [1, 0, 0, 1],  # Step 2: the first weight came back (|w| = 4.0).
        [1, 0, 0, 1],
    ]
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    kernel = stripped.layers[0].get_weights()[0][:, 0]
    assert kernel[1] == 0 and kernel[2] == 0 and kernel[0] > 4.0 and kernel[3] == 2.0


def block_pruned_mask(kernel, sparsity, pooling):
    """The mask tfmot's block pruning (blocks of 2 inputs x 1 output,
    `pooling`) gives a bias-free Dense holding `kernel`, after its update at
    step 1 (weights left unchanged by training)."""
    inputs, outputs = kernel.shape
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs, use_bias=False)])
    model.set_weights([kernel])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model,
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=1),
        block_size=(2, 1),
        block_pooling_type=pooling,
    )
    masks = train_and_record(pruned, np.ones((2, inputs), "float32"),
                             np.zeros((2, outputs), "float32"), 2,
                             optimizer=keras.optimizers.SGD(0.0))
    return masks[-1][0]


@pytest.mark.core
@pytest.mark.parametrize("pooling, pruned_block", [("AVG", 0), ("MAX", 1)])
def test_block_pooling_chooses_blocks_as_tfmot(pooling, pruned_block):
    # Kernel (4 inputs, 2 outputs) in blocks of 2 inputs x 1 output: mean and
    # maximum magnitude rank the blocks differently.
    kernel = np.array([[0.9, 0.6], [0.0, 0.6], [0.5, 1.0], [0.5, 1.0]], "float32")
    expected = np.ones((4, 2), "float32")
    expected[2 * pruned_block : 2 * pruned_block + 2, 0] = 0  # Block 0: inputs 0-1; 1: 2-3.
    np.testing.assert_array_equal(block_pruned_mask(kernel, 0.25, pooling), expected)


@pytest.mark.core
def test_weights_tied_at_the_threshold_are_kept_as_in_tfmot():
    # tfmot keeps every weight at least as large as the k-th largest: ties
    # at the threshold all stay (here, pruning nothing of the zero biases).
    model = keras.Sequential([keras.Input((4,)), MyDenseLayer(4)])
    kernel = np.full((4, 4), 0.5, "float32")
    kernel[0, 0] = 1.0
    kernel[3, :] = [0.1, 0.2, 0.3, 0.4]
    model.set_weights([kernel, np.zeros(4, "float32")])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=1)
    )
    x = np.ones((2, 4), "float32")
    masks = train_and_record(pruned, x, np.zeros((2, 4), "float32"), 2,
                             optimizer=keras.optimizers.SGD(0.0))
    kernel_mask, bias_mask = masks[-1]
    assert (kernel_mask == 0).sum() == 4 and (kernel_mask[3] == 0).all()  # 12 of 16 are >= 0.5.
    assert (bias_mask == 0).sum() == 0


@pytest.mark.core
def test_guide_2_by_4_sparsity():
    # tfmot's "Sparse weights using structured pruning" (2:4) guide, at 8x8.
    (train_images, train_labels), _ = digits()
    train_images = train_images[..., None]
    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params_2_by_4 = {"sparsity_m_by_n": (2, 4)}
    pruning_params_sparsity_0_5 = {
        "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
            target_sparsity=0.5, begin_step=0, frequency=100
        )
    }
    model = keras.Sequential([
        prune_low_magnitude(
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", input_shape=(8, 8, 1),
                                name="pruning_sparsity_0_5"),
            **pruning_params_sparsity_0_5),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        keras.layers.BatchNormalization(),
        prune_low_magnitude(
            keras.layers.Conv2D(16, 3, padding="same", name="structural_pruning"),
            **pruning_params_2_by_4),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        keras.layers.Flatten(),
        prune_low_magnitude(
            keras.layers.Dense(32, activation="relu", name="structural_pruning_dense"),
            **pruning_params_2_by_4),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(10),
    ])
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )
    record = RecordMasks(steps={0, 98, 99, 112})
    model.fit(train_images, train_labels, batch_size=12, epochs=1, validation_split=0.1,
              verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), record])
    # The N:M masks are set at the first step and never change (tfmot
    # ignores the schedule for them); the 50% layer prunes at step 99.
    first = record.at[0]
    assert [(mask == 0).mean() for mask in first] == [0.0, 0.5, 0.5]
    for masks in record.masks:
        assert all(np.array_equal(a, b) for a, b in zip(first[1:], masks[1:]))
    assert (record.at[98][0] == 0).sum() == 0 and (record.at[99][0] == 0).mean() == 0.5
    model = tfmot.sparsity.keras.strip_pruning(model)
    sparsity = {}
    for layer in model.layers:
        for weight in layer.weights:
            if "kernel" in weight.name:
                values = ops.convert_to_numpy(weight)
                sparsity[layer.name] = (values == 0).mean()
                if layer.name.startswith("structural"):
                    # Every 4 consecutive inputs of one output hold 2 zeros.
                    groups = np.moveaxis(values, -2, -1).reshape(-1, 4)
                    assert ((groups == 0).sum(axis=1) == 2).all(), layer.name
    assert sparsity["structural_pruning"] == 0.5 and sparsity["structural_pruning_dense"] == 0.5
    assert sparsity["pruning_sparsity_0_5"] == 0.5 and sparsity["dense"] == 0.0


# ------------------------------------------------------ the comprehensive guide


input_shape = [20]
x_train = np.random.default_rng(0).normal(size=(1, 20)).astype(np.float32)
y_train = keras.utils.to_categorical(np.array([3]), num_classes=20)


def setup_model():
    model = keras.Sequential([
        keras.layers.Dense(20, input_shape=input_shape),
        keras.layers.Flatten(),
    ])
    return model


def setup_pretrained_weights(directory):
    model = setup_model()
    model.compile(
        loss=keras.losses.categorical_crossentropy, optimizer="adam", metrics=["accuracy"]
    )
    model.fit(x_train, y_train, verbose=0)
    pretrained_weights = os.path.join(directory, "pretrained.weights.h5")  # Keras 3: .weights.h5
    model.save_weights(pretrained_weights)
    return pretrained_weights


def get_gzipped_model_size(model):
    # Returns size of gzipped model, in bytes.
    _, keras_file = tempfile.mkstemp(".h5")
    model.save(keras_file, include_optimizer=False)
    return gzipped_size(keras_file)


def wrapped_names(model):
    return [layer.name for layer in model.layers if isinstance(layer, tfs.SparseWrapper)]


def layer_types(layers):
    return [type(layer).__name__ for layer in layers]


@pytest.mark.core
def test_guide_prune_whole_model_and_some_layers(tmp_path):
    pretrained_weights = setup_pretrained_weights(tmp_path)

    # Prune whole model (Sequential and Functional).
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended.
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    model_for_pruning.summary(print_fn=lambda *args, **kwargs: None)
    assert model_for_pruning is not base_model
    assert layer_types(model_for_pruning.layers) == ["SparseWrapper", "Flatten"]
    # The clone shares the original's layers and weights, as in tfmot.
    assert model_for_pruning.layers[0].layer is base_model.layers[0]

    # Prune some layers: clone_model with a clone_function.
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)

    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return tfmot.sparsity.keras.prune_low_magnitude(layer)
        return layer

    model_for_pruning = keras.models.clone_model(base_model, clone_function=apply_pruning_to_dense)
    assert layer_types(model_for_pruning.layers) == ["SparseWrapper", "Flatten"]
    np.testing.assert_allclose(model_for_pruning.predict(x_train, verbose=0),
                               base_model.predict(x_train, verbose=0), atol=1e-6)

    # More readable but potentially lower model accuracy: functional ...
    i = keras.Input(shape=(20,))
    x = tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    model_for_pruning = keras.Model(inputs=i, outputs=o)
    assert len(tfs.sparse_kernels(model_for_pruning)) == 1

    # ... and Sequential, the layer pruned before the model is built.
    model_for_pruning = keras.Sequential([
        tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(20, input_shape=input_shape)),
        keras.layers.Flatten(),
    ])
    assert model_for_pruning.built
    assert layer_types(model_for_pruning.layers) == ["SparseWrapper", "Flatten"]
    unbuilt = keras.Sequential([
        keras.layers.Dense(6), tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(4))
    ])
    unbuilt.build((None, 3))
    assert tfs.sparse_kernels(unbuilt)[0].shape == (6, 4)


@keras.saving.register_keras_serializable(package="tf_sparsity_tests")
class MyDenseLayer(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
    def get_prunable_weights(self):
        # Prune bias also, though that usually harms model accuracy too much.
        return [self.kernel, self.bias]


@pytest.mark.core
def test_guide_custom_prunable_layer():
    model_for_pruning = keras.Sequential([
        tfmot.sparsity.keras.prune_low_magnitude(MyDenseLayer(20, input_shape=input_shape)),
        keras.layers.Flatten(),
    ])
    assert [kernel.name for kernel in tfs.sparse_kernels(model_for_pruning)] == ["kernel", "bias"]
    model_for_pruning.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    # 100 examples (the guide has one), so that every bias trains.
    x = np.random.default_rng(1).normal(size=(100, 20)).astype("float32")
    y = keras.utils.to_categorical(np.arange(100) % 20, num_classes=20)
    model_for_pruning.fit(x, y, batch_size=1, verbose=0,
                          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    # ConstantSparsity(0.5, 0): pruning step 100 is the 100th step.
    assert zeros_of(model_for_pruning) == [200, 10]
    stripped = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert type(stripped.layers[0]) is MyDenseLayer
    assert (stripped.layers[0].get_weights()[1] == 0).sum() == 10


@pytest.mark.core
def test_guide_checkpoint_and_deserialize(tmp_path):
    base_model = setup_model()
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
        base_model,
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1),
        block_size=(2, 2),
        block_pooling_type="MAX",
    )
    model_for_pruning.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    model_for_pruning.fit(x_train, y_train, verbose=0,
                          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    for suffix in (".keras", ".h5"):  # Keras 3 loses the compile config of a model saved to .h5.
        keras_model_file = str(tmp_path / f"pruned{suffix}")
        # Checkpoint: saving the optimizer is necessary (include_optimizer=True is the default).
        if suffix == ".h5":
            model_for_pruning.save(keras_model_file, include_optimizer=True)
        else:
            model_for_pruning.save(keras_model_file)
        # Deserialize model.
        with tfmot.sparsity.keras.prune_scope():
            loaded_model = keras.models.load_model(keras_model_file)
        loaded_model.summary(print_fn=lambda *args, **kwargs: None)
        assert loaded_model.layers[0].method == model_for_pruning.layers[0].method
        for loaded, saved in zip(masks_of(loaded_model), masks_of(model_for_pruning)):
            np.testing.assert_array_equal(loaded, saved)
        np.testing.assert_allclose(loaded_model.predict(x_train, verbose=0),
                                   model_for_pruning.predict(x_train, verbose=0), atol=1e-6)


@pytest.mark.core
def test_guide_strip_pruning_then_export(tmp_path):
    base_model = setup_model()
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
        base_model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.8, 0, frequency=1)
    )
    # Typically you train the model here.
    model_for_pruning.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    model_for_pruning.fit(x_train, y_train, verbose=0,
                          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert [type(layer).__name__ for layer in model_for_export.layers] == ["Dense", "Flatten"]
    assert [layer.name for layer in model_for_export.layers] == [
        layer.name for layer in base_model.layers
    ]
    np.testing.assert_allclose(model_for_export.predict(x_train, verbose=0),
                               model_for_pruning.predict(x_train, verbose=0), atol=1e-6)
    assert (ops.convert_to_numpy(model_for_export.layers[0].kernel) == 0).mean() == 0.8
    # The guide: stripping makes the gzipped model smaller.
    assert get_gzipped_model_size(model_for_export) < get_gzipped_model_size(model_for_pruning)
    with pytest.raises(ValueError, match="Expected model to be a `keras.Model`"):
        tfmot.sparsity.keras.strip_pruning(keras.layers.Dense(3))


@pytest.mark.core
def test_lists_nested_models_attention_and_policies():
    prune = tfmot.sparsity.keras.prune_low_magnitude
    layers = prune([keras.layers.Dense(3), keras.layers.Dropout(0.1), keras.layers.Conv2D(2, 3)])
    assert layer_types(layers) == ["SparseWrapper", "Dropout", "SparseWrapper"]

    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="inner_dense")])
    inputs = keras.Input((4, 6))
    attended = keras.layers.MultiHeadAttention(2, 3, name="attention")(inputs, inputs)
    outputs = keras.layers.Dense(2, name="head")(inner(keras.layers.Flatten()(attended)[:, :6]))
    model = keras.Model(inputs, outputs)
    pruned = prune(model)
    paths = [kernel.path for kernel in tfs.sparse_kernels(pruned)]
    assert len(paths) == 6 and any("inner_dense" in p for p in paths)
    assert sum("attention" in p for p in paths) == 4  # query, key, value, output.

    class OnlyWide(tfmot.sparsity.keras.PruningPolicy):
        def allow_pruning(self, layer):
            return isinstance(layer, keras.layers.Dense) and layer.units > 3

        def ensure_model_supports_pruning(self, model):
            if not model.built:
                raise ValueError("Unbuilt models are not supported currently.")

    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8, name="wide"), keras.layers.Dense(2, name="narrow")
    ])
    assert wrapped_names(prune(model, pruning_policy=OnlyWide())) == ["wide"]


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


class Opaque(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 2))

    def call(self, x):
        return ops.matmul(x, self.w)


class HeldBySublayer(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    def __init__(self):
        super().__init__()
        self.inner = keras.layers.Dense(2)

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x)

    def get_prunable_weights(self):
        return [self.inner.kernel]


class TfmotLikeSchedule:
    """Stands for tensorflow_model_optimization's own schedule object."""


TfmotLikeSchedule.__module__ = "tensorflow_model_optimization.python.core.sparsity.keras"


def built(layer, shape):
    layer.build(shape)
    return layer


@pytest.mark.core
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p: p(Subclassed()), ValueError,
         r"Subclassed models are not supported.*tfs\.sparsify"),
        (lambda p: p(built(Opaque(), (None, 3))), ValueError,
         r"get_prunable_weights\(\).*tfs\.register_sparsifiable\(Opaque"),
        (lambda p: p(keras.layers.LSTM(3)), ValueError, r"recurrent.*clone_model"),
        (lambda p: p(built(HeldBySublayer(), (None, 3))), ValueError,
         r"no attribute of the layer holds"),
        (lambda p: p(keras.layers.Dense(3), block_pooling_type="MIN"), ValueError,
         r"Unsupported pooling type 'MIN'"),
        (lambda p: p(keras.layers.Dense(3), sparsity_m_by_n=(4, 2)), ValueError,
         r"m be must smaller than n"),
        (lambda p: p(keras.layers.Dense(3), sparsity_m_by_n=(2,)), ValueError,
         r"sparsity_m_by_n argument must be a tuple/list of 2 integers"),
        (lambda p: p(keras.layers.Dense(3), pruning_schedule=TfmotLikeSchedule()), TypeError,
         r"tensorflow_model_optimization's TfmotLikeSchedule.*"
         r"from tf_sparsity.compat import tfmot"),
        (lambda p: p(keras.layers.Dense(3), pruning_schedule=tfs.ConstantSparsity(0.5)), TypeError,
         r"tfs\.sparsify\(model, tfs\.MagnitudePruning\(schedule\)\)"),
        (lambda p: p("dense"), ValueError, r"can only prune an object of the following types"),
        (lambda p: keras.Sequential([
            keras.Input((4, 4, 3)), p(keras.layers.Conv2D(4, 3), block_size=(2, 2))
        ]),
         ValueError, r"block sparsity applies to 2-D .*tfs\.Block\(\(rows, cols\)\)"),
        (lambda p: keras.Sequential([
            keras.Input((6,)), p(keras.layers.Dense(4), sparsity_m_by_n=(2, 4))
        ]),
         ValueError, r"6 inputs, not a multiple of 4.*tfs\.NM\(2, 4\)"),
        (lambda p: p(Opaque()), ValueError, r"Opaque.*cannot be pruned"),
        (lambda p: tfmot.sparsity.keras.PruneForLatencyOnXNNPack(), NotImplementedError,
         r"PruneForLatencyOnXNNPack.*allow_pruning\(layer\).*tfs\.Block\(\(1, 4\)\)"),
        (lambda p: tfmot.quantization, AttributeError, r"model\.quantize\('int8'\)"),
        (lambda p: tfmot.sparsity.keras.PruneRegistry, AttributeError,
         r"not part of tfmot's pruning API"),
    ],
)
def test_what_cannot_be_done_says_what_to_do(call, error, message):
    with pytest.raises(error, match=message):
        call(tfmot.sparsity.keras.prune_low_magnitude)


@pytest.mark.core
def test_unbuilt_prunable_layer_needs_an_input_shape_or_a_registration():
    class Unregistered(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]

    with pytest.raises(ValueError, match=r"not built.*tfs\.register_sparsifiable\(Unregistered"):
        tfmot.sparsity.keras.prune_low_magnitude(Unregistered(3))
    tfs.register_sparsifiable(Unregistered, ["_kernel"])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(Unregistered(3))
    model = keras.Sequential([keras.Input((5,)), pruned])
    assert [kernel.shape for kernel in tfs.sparse_kernels(model)] == [(5, 3)]


# ------------------------------------- the migration guide's "Differences"


def fit_and_record(pruned, x, y, callback, optimizer=None, batch_size=4):
    """Compiles `pruned` (mse, SGD by default), fits one epoch with
    `callback`, and returns the number of zeros of each mask after every
    step."""
    pruned.compile(optimizer=optimizer or keras.optimizers.SGD(0.1), loss="mse")
    record = RecordMasks()
    pruned.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
               callbacks=[callback, record])
    return [[int((mask == 0).sum()) for mask in masks] for masks in record.masks]


def expected_zeros(schedule, sizes, steps, first_step=0, current=None):
    """tfmot's zeros per kernel after each training step: training step `i`
    runs at pruning step `i + 1`."""
    expected, current = [], list(current or [0] * len(sizes))
    for step in range(first_step, first_step + steps):
        should_prune, sparsity = schedule(step + 1)
        if should_prune:
            current = [tfmot_pruned_count(size, sparsity) for size in sizes]
        expected.append(list(current))
    return expected


@pytest.mark.core
@pytest.mark.parametrize(
    "make_layers, input_shape, output_shape, pruned, left_dense",
    [
        # Both kernels of SeparableConv2D (tfmot: the pointwise one only);
        # DepthwiseConv2D and normalization left dense, as tfmot does.
        (lambda: [keras.layers.SeparableConv2D(4, 3, name="separable"),
                  keras.layers.DepthwiseConv2D(3, name="depthwise"),
                  keras.layers.BatchNormalization(name="norm"),
                  keras.layers.Flatten(), keras.layers.Dense(2, name="head")],
         (8, 8, 3), (2,),
         ["separable/depthwise_kernel", "separable/pointwise_kernel", "head/kernel"],
         {"depthwise": "kernel", "norm": "gamma"}),
        # Conv1DTranspose and EinsumDense (tfmot refuses both), SeparableConv1D;
        # DepthwiseConv1D (tfmot refuses it) left dense.
        (lambda: [keras.layers.Conv1DTranspose(4, 3, name="transpose"),
                  keras.layers.DepthwiseConv1D(3, name="depthwise1d"),
                  keras.layers.SeparableConv1D(2, 3, name="separable1d"),
                  keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), name="einsum")],
         (6, 3), (4, 5),
         ["transpose/kernel", "separable1d/depthwise_kernel", "separable1d/pointwise_kernel",
          "einsum/kernel"],
         {"depthwise1d": "kernel"}),
        # Embedding, as tfmot.
        (lambda: [keras.layers.Embedding(20, 4, name="embedding"), keras.layers.Flatten(),
                  keras.layers.Dense(1, name="head")],
         (5,), (1,), ["embedding/embeddings", "head/kernel"], {}),
    ],
    ids=["separable_and_depthwise", "transpose_einsum_separable1d", "embedding"],
)
def test_layers_pruned_beyond_tfmot_and_left_dense_as_tfmot(
    make_layers, input_shape, output_shape, pruned, left_dense
):
    layers = make_layers()
    embedding = isinstance(layers[0], keras.layers.Embedding)
    model = keras.Sequential([keras.Input(input_shape, dtype="int32" if embedding else "float32")]
                             + layers)
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    kernels = tfs.sparse_kernels(pruned_model)
    assert [kernel.path for kernel in kernels] == pruned
    for name in left_dense:
        assert not isinstance(pruned_model.get_layer(name), tfs.SparseWrapper), name
    rng = np.random.default_rng(0)
    if embedding:
        x = rng.integers(0, 20, size=(8,) + input_shape).astype("int32")
    else:
        x = rng.normal(size=(8,) + input_shape).astype("float32")
    y = rng.normal(size=(8,) + output_shape).astype("float32")
    zeros = fit_and_record(pruned_model, x, y, tfmot.sparsity.keras.UpdatePruningStep())
    assert zeros[-1] == [tfmot_pruned_count(int(np.prod(kernel.shape)), 0.5) for kernel in kernels]
    stripped = tfmot.sparsity.keras.strip_pruning(pruned_model)
    for path in pruned:
        name, attribute = path.split("/")
        weight = ops.convert_to_numpy(getattr(stripped.get_layer(name), attribute))
        assert (weight == 0).sum() == tfmot_pruned_count(weight.size, 0.5), path
    for name, attribute in left_dense.items():
        weight = ops.convert_to_numpy(getattr(stripped.get_layer(name), attribute))
        assert (weight != 0).all(), name


@pytest.mark.core
@pytest.mark.parametrize("pooling", ["AVG", "MAX"])
def test_a_partial_block_is_scored_over_its_own_weights(pooling):
    # 5 inputs in blocks of 2: blocks 0-1, 2-3 and the partial block 4.
    # Scored over its own weight (0.55), the partial block outranks block
    # 0-1 (0.5); padded with a zero, its mean would be the smallest.
    kernel = np.array([[0.5], [0.5], [0.6], [0.6], [0.55]], "float32")
    np.testing.assert_array_equal(block_pruned_mask(kernel, 0.34, pooling)[:, 0], [0, 0, 1, 1, 1])


@pytest.mark.core
@pytest.mark.filterwarnings("ignore:SparsityCallback. this fit's last step")
def test_schedule_starts_again_after_a_recompile():
    # tfmot's pruning_step variable would go on counting; here the step is
    # optimizer.iterations, which a new optimizer starts at 0.
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=8, frequency=2)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype("float32"), rng.normal(size=(32, 3)).astype("float32")
    callback = tfmot.sparsity.keras.UpdatePruningStep
    first = fit_and_record(pruned, x, y, callback())
    assert first == expected_zeros(schedule, [18], 8)
    assert first[-1] == [tfmot_pruned_count(18, 0.8)]
    second = fit_and_record(pruned, x[:16], y[:16], callback(), optimizer=keras.optimizers.SGD(0.1))
    assert int(pruned.optimizer.iterations) == 4
    # Steps 0-3 again: no update at step 0 (pruning step 1), then the
    # schedule's values at pruning steps 2 and 4, below the 80% reached.
    assert second == expected_zeros(schedule, [18], 4, current=first[-1])
    assert second[1][0] < first[-1][0]


@pytest.mark.core
def test_a_layer_called_twice_per_step_counts_one_step():
    # tfmot's wrapper counts a pruning step per call, so a layer called twice
    # runs its schedule twice as fast; here the step is the training step.
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=8, frequency=2)
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    assert wrapped_names(pruned) == ["shared"]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 4)).astype("float32")
    zeros = fit_and_record(pruned, x, y, tfmot.sparsity.keras.UpdatePruningStep())
    assert zeros == expected_zeros(schedule, [16], 8)


@pytest.mark.core
def test_sparsity_callback_drives_compat_models():
    # The regrowth case of `test_pruned_weights_grow_back_as_in_tfmot`: the
    # masks depend on the pruned weights being zeroed before each update.
    def regrowth_masks(callback):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
        model.set_weights([np.array([[0.1], [0.2], [1.0], [2.0]], "float32")])
        schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=1, frequency=2)
        pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        x = np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], "float32"), (4, 1))
        pruned.compile(optimizer=keras.optimizers.SGD(0.2), loss="mse")
        record = RecordMasks()
        pruned.fit(x, np.full((4, 1), 10.0, "float32"), batch_size=1, epochs=1, shuffle=False,
                   verbose=0, callbacks=[callback, record])
        return [masks[0][:, 0].tolist() for masks in record.masks]

    expected = [[0, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1]]
    assert regrowth_masks(tfmot.sparsity.keras.UpdatePruningStep()) == expected
    assert regrowth_masks(tfs.SparsityCallback()) == expected

    # Gradual pruning: the same masks at every step with either callback.
    # Only UpdatePruningStep zeroes the pruned weights at the epoch's end
    # (between updates they train on, as the guide says).
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=4, frequency=2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 6)).astype("float32"), rng.normal(size=(24, 3)).astype("float32")
    pruned_values = {}
    for callback in (tfmot.sparsity.keras.UpdatePruningStep(), tfs.SparsityCallback()):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False)])
        pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        assert fit_and_record(pruned, x, y, callback) == expected_zeros(schedule, [18], 6)
        mask = masks_of(pruned)[0]
        kernel = ops.convert_to_numpy(pruned.layers[0].layer.kernel)
        pruned_values[type(callback).__name__] = np.abs(kernel[mask == 0]).max()
    assert pruned_values["UpdatePruningStep"] == 0
    assert pruned_values["SparsityCallback"] > 0


@pytest.mark.core
def test_training_without_a_callback_is_an_error_naming_update_pruning_step():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    pruned.compile("sgd", "mse")
    x = np.ones((8, 6), "float32")
    with pytest.raises(RuntimeError, match=r"nothing drives its TfmotMagnitudePruning schedule"
                                           r"(.|\n)*callbacks=\[tfmot\.sparsity\.keras\."
                                           r"UpdatePruningStep\(\)\]"):
        pruned.fit(x, x[:, :3], batch_size=4, epochs=1, verbose=0)


# -------------------------------------------------------- TensorFlow only


@pytest.mark.tensorflow
def test_guide_custom_training_loop(tmp_path):
    import tensorflow as tf

    def run_loop(pruning_schedule):
        base_model = setup_model()
        model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
            base_model, pruning_schedule=pruning_schedule
        )

        # Boilerplate
        loss = keras.losses.categorical_crossentropy
        optimizer = keras.optimizers.Adam()
        log_dir = tempfile.mkdtemp(dir=tmp_path)
        unused_arg = -1
        epochs = 2
        batches = 1  # example is hardcoded so that the number of batches cannot change.

        # Non-boilerplate.
        model_for_pruning.optimizer = optimizer
        step_callback = tfmot.sparsity.keras.UpdatePruningStep()
        step_callback.set_model(model_for_pruning)
        log_callback = tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)
        log_callback.set_model(model_for_pruning)

        step_callback.on_train_begin()  # run pruning callback
        for _ in range(epochs):
            log_callback.on_epoch_begin(epoch=unused_arg)  # run pruning callback
            for _ in range(batches):
                step_callback.on_train_batch_begin(batch=unused_arg)  # run pruning callback

                with tf.GradientTape() as tape:
                    logits = model_for_pruning(x_train, training=True)
                    loss_value = loss(y_train, logits)
                    grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                    optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))

            step_callback.on_epoch_end(batch=unused_arg)  # run pruning callback
        return model_for_pruning, log_dir

    # The guide's default schedule prunes first at pruning step 100: nothing yet.
    model, _ = run_loop(tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
    assert int(model.optimizer.iterations) == 2 and zeros_of(model) == [0]
    model, log_dir = run_loop(tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=2, frequency=1))
    # Pruning step 2 is the second step; the epoch end zeroes pruned weights.
    assert zeros_of(model) == [200]
    assert (ops.convert_to_numpy(model.layers[0].layer.kernel) == 0).sum() == 200
    mask = tfs.sparse_kernels(model)[0].state.mask
    assert f"{mask.path}/sparsity" in summary_tags(os.path.join(log_dir, "metrics"))


def summary_tags(directory):
    import tensorflow as tf

    tags = set()
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras_pruning_example(tmp_path):
    # tfmot's "Pruning in Keras example", on 8x8 digits (batch size 8, so that
    # its 2 pruning epochs span several pruning steps of frequency 100).
    import tensorflow as tf

    (train_images, train_labels), (test_images, test_labels) = digits()

    model = keras.Sequential([
        keras.layers.InputLayer(input_shape=(8, 8)),
        keras.layers.Reshape(target_shape=(8, 8, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=4, validation_split=0.1, verbose=0)
    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    keras_file = str(tmp_path / "baseline.h5")
    keras.models.save_model(model, keras_file, include_optimizer=False)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    batch_size = 8
    epochs = 2
    validation_split = 0.1
    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step
        )
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(optimizer="adam",
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
    model_for_pruning.summary(print_fn=lambda *args, **kwargs: None)
    logdir = str(tmp_path / "logs")
    callbacks = [
        tfmot.sparsity.keras.UpdatePruningStep(),
        tfmot.sparsity.keras.PruningSummaries(log_dir=logdir),
    ]
    model_for_pruning.fit(train_images, train_labels, batch_size=batch_size, epochs=epochs,
                          validation_split=validation_split, callbacks=callbacks, verbose=0)
    _, model_for_pruning_accuracy = model_for_pruning.evaluate(test_images, test_labels, verbose=0)
    assert model_for_pruning_accuracy > baseline_model_accuracy - 0.1

    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    pruned_keras_file = str(tmp_path / "pruned.h5")
    keras.models.save_model(model_for_export, pruned_keras_file, include_optimizer=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    pruned_tflite_model = converter.convert()
    pruned_tflite_file = str(tmp_path / "pruned.tflite")
    with open(pruned_tflite_file, "wb") as f:
        f.write(pruned_tflite_model)

    # Sparsity as tfmot reaches it: the last update (pruning step 300) is
    # below end_step (338), so the kernels sit just under 80%.
    schedule = pruning_params["pruning_schedule"]
    last = schedule.last_update_step(end_step - 1)
    assert last == 299
    for layer in model_for_export.layers:
        if layer.weights and "kernel" in layer.weights[0].name:
            kernel = ops.convert_to_numpy(layer.weights[0])
            assert (kernel == 0).sum() == tfmot_pruned_count(kernel.size, schedule.sparsity(last))
    assert gzipped_size(pruned_keras_file) < gzipped_size(keras_file)
    assert gzipped_size(pruned_tflite_file) < gzipped_size(keras_file)
    assert summary_tags(os.path.join(logdir, "metrics")) >= {
        "conv2d/kernel_mask/sparsity", "dense/kernel_mask/sparsity"
    }
    assert os.listdir(os.path.join(logdir, "train"))  # Keras's own TensorBoard logs.


# ------------------------------------------------------- side by side with tfmot


def run_scenario(keras, tfmot, spec, arrays, read_masks):
    """Trains one scenario through tfmot's API (`keras` and `tfmot` are
    either tf_keras and tfmot, or Keras 3 and this compat layer); returns
    the masks after every step and the stripped model's weights, as lists.
    Runs in the tfmot peer process too, from its source."""
    import numpy as np

    layers = [keras.Input((arrays["x"].shape[1],))]
    for units, activation in spec["layers"]:
        layers.append(keras.layers.Dense(units, activation=activation, use_bias=spec["bias"]))
    model = keras.Sequential(layers)
    model.set_weights([arrays[f"weight_{i}"] for i in range(len(model.get_weights()))])
    schedule_class = getattr(tfmot.sparsity.keras, spec["schedule"][0])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=schedule_class(**spec["schedule"][1]), **spec["pruning"]
    )
    if spec["loss"] == "crossentropy":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.MeanSquaredError()
    optimizer = keras.optimizers.SGD(spec["learning_rate"], momentum=spec["momentum"])
    pruned.compile(optimizer=optimizer, loss=loss)
    masks = []

    class RecordMasks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            masks.append([np.asarray(mask).tolist() for mask in read_masks(self.model)])

    pruned.fit(arrays["x"], arrays["y"], batch_size=spec["batch_size"], epochs=spec["epochs"],
               shuffle=False, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), RecordMasks()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return {"masks": masks, "weights": [np.asarray(w).tolist() for w in stripped.get_weights()]}


TFMOT_PEER = '''
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tf_keras as keras
import tensorflow_model_optimization as tfmot

{runner}

def read_masks(model):
    return [
        mask.numpy() for layer in model.layers for _, mask, _ in getattr(layer, "pruning_vars", [])
    ]

specs = json.load(open(sys.argv[1]))
arrays = np.load(sys.argv[2])
results = {{}}
for name, spec in specs.items():
    prefix = name + "__"
    scenario_arrays = {{
        key[len(prefix):]: arrays[key] for key in arrays.files if key.startswith(prefix)
    }}
    results[name] = run_scenario(keras, tfmot, spec, scenario_arrays, read_masks)
print(json.dumps(results))
'''

GRADUAL = {"schedule": ["PolynomialDecay", {"initial_sparsity": 0.0, "final_sparsity": 0.5,
                                             "begin_step": 3, "end_step": 33, "frequency": 5}]}
SIDE_BY_SIDE = {
    # Gradual pruning of a small classifier, SGD with momentum.
    "gradual": {**GRADUAL, "layers": [[12, "relu"], [4, None]], "pruning": {}},
    # A high learning rate: pruned weights grow back (tfmot's regrowth).
    "regrowth": {
        "layers": [[3, None]], "bias": False, "loss": "mse", "learning_rate": 0.3, "momentum": 0.0,
        "schedule": ["ConstantSparsity", {"target_sparsity": 0.5, "begin_step": 1, "frequency": 2}],
        "pruning": {}, "epochs": 2,
    },
    "blocks_max": {**GRADUAL, "layers": [[8, "relu"], [4, None]],
                   "pruning": {"block_size": [2, 2], "block_pooling_type": "MAX"}},
    "blocks_avg": {**GRADUAL, "layers": [[8, "relu"], [4, None]],
                   "pruning": {"block_size": [4, 1]}},
    "two_by_four": {**GRADUAL, "layers": [[8, "relu"], [4, None]],
                    "pruning": {"sparsity_m_by_n": [2, 4]}},
}
SIDE_BY_SIDE_DEFAULTS = {
    "bias": True, "loss": "crossentropy", "learning_rate": 0.1, "momentum": 0.9,
    "batch_size": 8, "epochs": 3,
}


def side_by_side_arrays(spec, rng, examples=96):
    inputs = 6 if spec["loss"] == "mse" else 16
    x = rng.normal(size=(examples, inputs)).astype("float32")
    arrays, sizes = {"x": x}, [inputs] + [units for units, _ in spec["layers"]]
    weights = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        weights.append((rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype("float32"))
        if spec["bias"]:
            weights.append(np.zeros(fan_out, "float32"))
    arrays.update({f"weight_{i}": w for i, w in enumerate(weights)})
    projection = rng.normal(size=(inputs, sizes[-1]))
    if spec["loss"] == "crossentropy":
        arrays["y"] = np.argmax(x @ projection, axis=1)
    else:
        arrays["y"] = (x @ projection).astype("float32")
    return arrays


def accuracy(weights, spec, arrays):
    """Training accuracy of a scenario's classifier from its stripped
    weights (NumPy forward pass)."""
    outputs, weights = arrays["x"], [np.asarray(w, "float32") for w in weights]
    per_layer = 2 if spec["bias"] else 1
    for index, (_, activation) in enumerate(spec["layers"]):
        kernel, *bias = weights[per_layer * index : per_layer * (index + 1)]
        outputs = outputs @ kernel + (bias[0] if bias else 0.0)
        if activation == "relu":
            outputs = np.maximum(outputs, 0.0)
    return float((outputs.argmax(axis=1) == arrays["y"]).mean())


def changes(masks):
    """The steps at which some mask changed, and how many pruned weights
    came back over the run."""
    changed, regrown = [], 0
    for step, (before, after) in enumerate(zip(masks, masks[1:]), start=1):
        pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(before, after)]
        if any((a != b).any() for a, b in pairs):
            changed.append(step)
        regrown += sum(int(((a == 0) & (b == 1)).sum()) for a, b in pairs)
    return changed, regrown


@pytest.mark.slow
@pytest.mark.core
@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None
        for name in ("tensorflow", "tf_keras", "tensorflow_model_optimization")),
    reason="needs the tfmot extra (tensorflow-model-optimization, tf-keras)",
)
def test_same_masks_as_tfmot_at_every_step(tmp_path):
    rng = np.random.default_rng(0)
    specs = {name: {**SIDE_BY_SIDE_DEFAULTS, **spec} for name, spec in SIDE_BY_SIDE.items()}
    arrays = {name: side_by_side_arrays(spec, rng) for name, spec in specs.items()}
    (tmp_path / "specs.json").write_text(json.dumps(specs))
    np.savez(tmp_path / "arrays.npz",
             **{f"{name}__{key}": value for name, a in arrays.items() for key, value in a.items()})
    peer = tmp_path / "tfmot_peer.py"
    peer.write_text(TFMOT_PEER.format(runner=inspect.getsource(run_scenario)))
    # tfmot runs in its own process (tf_keras), meanwhile the compat layer here.
    process = subprocess.Popen(
        [sys.executable, str(peer), str(tmp_path / "specs.json"), str(tmp_path / "arrays.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    ours = {name: run_scenario(keras, tfmot, spec, arrays[name], masks_of)
            for name, spec in specs.items()}
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    theirs = json.loads(stdout.strip().splitlines()[-1])
    for name in specs:
        ours_masks, their_masks = ours[name]["masks"], theirs[name]["masks"]
        assert len(ours_masks) == len(their_masks) > 0, name
        for step, (mine, reference) in enumerate(zip(ours_masks, their_masks)):
            for layer, (a, b) in enumerate(zip(mine, reference)):
                np.testing.assert_array_equal(
                    np.asarray(a), np.asarray(b), err_msg=f"{name}: step {step}, layer {layer}"
                )
        assert changes(ours_masks) == changes(their_masks), name
        for a, b in zip(ours[name]["weights"], theirs[name]["weights"]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=name)
        if specs[name]["loss"] == "crossentropy":
            ours_accuracy = accuracy(ours[name]["weights"], specs[name], arrays[name])
            assert ours_accuracy == accuracy(theirs[name]["weights"], specs[name], arrays[name])
            assert ours_accuracy > 0.5, name  # Pruned to 50%, still learning (4 classes).
    assert changes(theirs["regrowth"]["masks"])[1] > 0  # The scenario does regrow weights.
    # Masks change only on the steps tfmot's schedule prunes at (pruning
    # steps 3, 8, ..., 33 are training steps 2, 7, ..., 32).
    updates = {2 + 5 * k for k in range(7)}
    assert set(changes(theirs["gradual"]["masks"])[0]) <= updates
    assert len(changes(theirs["gradual"]["masks"])[0]) >= 5
