"""Bad input, third round (issue #20), library side: what was accepted
silently is now an error (or a warning where the input can be legitimate),
and what was unclear names its culprit."""

import importlib.util
import io
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tests import models
from tf_sparsity import updater as updater_lib
from tf_sparsity.layers import kernels as kernels_lib


def gradual(begin_step=0, end_step=4):
    return tfs.PolynomialDecay(0.0, 0.5, begin_step=begin_step, end_step=end_step, frequency=2)


def unpruned_warnings(caught):
    return [str(w.message) for w in caught if "0% sparsity" in str(w.message)]


# Accepted silently before.


@pytest.mark.core
def test_blocks_larger_than_a_kernel_are_refused_before_pruning_it_whole():
    model = models.sequential()
    method = tfs.MagnitudePruning(tfs.OneShot(0.5), structure=tfs.Block((64, 64)))
    with pytest.raises(ValueError) as error:
        tfs.sparsify(model, method)
    message = str(error.value)
    assert "'hidden'" in message and "(8, 16)" in message and "Block((64, 64))" in message
    assert "single block" in message
    assert not tfs.sparse_layers(model)  # Refused before any layer changed.
    # Blocks that fit, but so few that the target would prune them all.
    method = tfs.MagnitudePruning(tfs.OneShot(0.9), structure=tfs.Block((8, 8)))
    with pytest.raises(ValueError, match=r"'hidden'.*only 2 blocks.*every one"):
        tfs.sparsify(models.sequential(), method)
    # Dynamic sparse methods build their masks on the same check.
    with pytest.raises(ValueError, match=r"'hidden'.*single block"):
        tfs.sparsify(
            models.sequential(),
            tfs.SET(0.5, update_frequency=2, end_step=10, seed=0, structure=tfs.Block((64, 64))),
        )
    # Blocks smaller than the kernels still prune to the target.
    sparse = tfs.sparsify(
        models.sequential(), tfs.MagnitudePruning(tfs.OneShot(0.5), structure=tfs.Block((4, 4)))
    )
    tfs.update_masks(sparse, 0)
    assert tfs.sparsity_summary(sparse, print_fn=None).global_sparsity == pytest.approx(0.5)


@pytest.mark.core
def test_strip_warns_naming_the_layers_whose_masks_were_never_updated():
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(gradual(begin_step=1000, end_step=2000)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfs.strip(sparse)
    (message,) = unpruned_warnings(caught)
    assert message.startswith("strip:") and "'hidden'" in message and "'logits'" in message
    # Once the masks are updated, stripping says nothing.
    tfs.update_masks(sparse, 2000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = tfs.strip(sparse)
    assert not unpruned_warnings(caught)
    assert tfs.sparsity_summary(plain, print_fn=None).global_sparsity == pytest.approx(0.5)


@pytest.mark.tensorflow
@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert")
def test_exports_warn_naming_the_layers_whose_masks_were_never_updated(tmp_path):
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(gradual()), layers=["hidden"])
    with pytest.warns(UserWarning, match=r"export_litert: .*'hidden'.*0% sparsity"):
        tfs.export_litert(sparse, tmp_path / "m.tflite", print_fn=None)
    with pytest.warns(UserWarning, match=r"export_saved_model: .*'hidden'.*0% sparsity"):
        tfs.export_saved_model(sparse, tmp_path / "saved")


@pytest.mark.core
def test_fit_that_ends_before_the_schedule_warns_at_its_start():
    x, y = np.zeros((8, 8), "float32"), np.zeros((8, 4), "float32")
    model = tfs.sparsify(
        models.sequential(),
        tfs.MagnitudePruning(tfs.PolynomialDecay(0.0, 0.5, begin_step=1000, end_step=2000)),
    )
    model.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="SparsityCallback") as caught:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    (message,) = [str(w.message) for w in caught if "SparsityCallback" in str(w.message)]
    # 1 epoch x 2 steps: steps 0 and 1, long before the pruning starts.
    assert "last step is 1" in message and "1 epoch x 2 steps" in message
    assert "MagnitudePruning ends at step 2000" in message
    assert "sparsity reaches 0.0% of its 50.0% target" in message

    # A fit that covers the schedule says nothing.
    model = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(gradual(end_step=1)))
    model.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert not [w for w in caught if "SparsityCallback" in str(w.message)]


@pytest.mark.core
def test_unfinished_schedules_say_what_each_method_reaches():
    rigl = tfs.sparsify(models.sequential(), tfs.RigL(0.5, update_frequency=10, end_step=20, seed=0))
    assert updater_lib.get_updater(rigl).unfinished_schedules(5) == [
        "RigL ends at step 20: no update runs"
    ]
    assert updater_lib.get_updater(rigl).unfinished_schedules(15) == [
        "RigL ends at step 20: its updates after step 10 never run"
    ]
    assert updater_lib.get_updater(rigl).unfinished_schedules(20) == []
    vd = tfs.sparsify(models.sequential(), tfs.make_method("variational_dropout", 0.5, 100, num_examples=10))
    (line,) = updater_lib.get_updater(vd).unfinished_schedules(20)
    assert line == "VariationalDropout ends at step 40: the penalty reaches 50% of its full weight"


@pytest.mark.core
def test_rigl_whose_updates_never_move_a_connection_is_refused():
    with pytest.raises(ValueError, match=r"end_step \(50\).*update_frequency=100"):
        tfs.RigL(0.9, update_frequency=100, end_step=50)
    # Its only update at end_step, where the cosine decay is at 0.
    with pytest.raises(ValueError, match=r"end_step \(100 = update_frequency\).*cosine"):
        tfs.RigL(0.9, update_frequency=100, end_step=100)
    # The same step is fine when the fraction does not decay.
    constant = tfs.RigL(0.9, update_frequency=100, end_step=100, drop_fraction_decay="constant")
    assert constant.fraction_at(100) == pytest.approx(0.3)


@pytest.mark.core
@pytest.mark.parametrize(
    "name, override, culprit",
    [
        ("set", {"frequency": 0}, "frequency"),
        ("rigl", {"end_step": 0}, "end_step"),
        ("rigl", {"frequency": -5}, "frequency"),
        ("magnitude", {"frequency": 0}, "frequency"),
    ],
)
def test_make_method_refuses_an_explicit_override_instead_of_replacing_it(name, override, culprit):
    with pytest.raises(ValueError, match=f"`{culprit}` must be >= 1, got"):
        tfs.make_method(name, 0.9, 100, **override)


@pytest.mark.core
def test_make_method_uses_explicit_overrides_as_given():
    made = tfs.make_method("set", 0.9, 100, frequency=7, end_step=40, seed=0)
    assert (made.update_frequency, made.end_step) == (7, 40)
    # Defaults still fill what is not given.
    assert tfs.make_method("rigl", 0.9, 100, seed=0).end_step == 75


@pytest.mark.core
def test_update_masks_refuses_a_model_without_sparse_layers():
    with pytest.raises(ValueError, match=r"update_masks: model 'seq' has no sparse layer"):
        tfs.update_masks(models.sequential(), 0)


# Unclear before.


@pytest.mark.tensorflow
@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert")
def test_int8_export_takes_a_generator_function_as_the_converter_does(tmp_path, rng):
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(tfs.OneShot(0.5)))
    tfs.update_masks(sparse, 0)
    x = rng.normal(size=(8, 8)).astype("float32")
    calls = []

    def examples():
        calls.append(1)
        for row in x:
            yield [row[None]]

    report = tfs.export_litert(
        sparse, tmp_path / "int8.tflite", quantize="int8", representative_data=examples, print_fn=None
    )
    assert calls and report.size_bytes > 0
    # A generator object is not what the converter takes: say what is.
    with pytest.raises(TypeError, match=r"representative_data.*function returning an iterable.*generator"):
        tfs.export_litert(
            sparse, tmp_path / "again.tflite", quantize="int8", representative_data=examples(), print_fn=None
        )


@pytest.mark.core
def test_zero_sparsity_is_named_not_the_distribution():
    with pytest.raises(ValueError, match=r"SET: `sparsity` is 0.0") as error:
        tfs.SET(0.0)
    assert "dense=" not in str(error.value)
    with pytest.raises(ValueError, match=r"RigL: `sparsity` is 0.0"):
        tfs.RigL(0.0, end_step=10)
    pruning = tfs.MagnitudePruning(tfs.PolynomialDecay(0.0, 0.0, 0, 10))
    with pytest.raises(ValueError, match=r"MagnitudePruning's target sparsity is 0.0") as error:
        tfs.sparsify(models.sequential(), pruning)
    assert "dense=" not in str(error.value)


@pytest.mark.core
def test_load_masks_names_a_bad_file_seed_or_path(tmp_path):
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(tfs.OneShot(0.5)))
    tfs.update_masks(sparse, 0)
    written = tfs.save_masks(sparse, tmp_path / "run" / "masks")
    assert written.endswith("masks.npz")
    # The name given to save_masks finds its file.
    target = tfs.sparsify(models.sequential(), tfs.FixedMask())
    tfs.load_masks(target, tmp_path / "run" / "masks")
    assert tfs.sparsity_summary(target, print_fn=None).global_sparsity == pytest.approx(0.5)
    with pytest.raises(TypeError, match=r"load_masks: `shuffle_seed` must be an int, got 'x'"):
        tfs.load_masks(target, written, shuffle_seed="x")
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        tfs.load_masks(target, tmp_path / "elsewhere")
    content = open(written, "rb").read()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz' is not a tf_sparsity mask file.*BadZipFile"):
        tfs.load_masks(target, truncated)


@pytest.mark.core
def test_make_method_names_bad_step_and_example_counts():
    with pytest.raises(TypeError, match=r"make_method\('magnitude'\): `total_steps` must be an int, got '100'"):
        tfs.make_method("magnitude", 0.9, "100")
    for name in ("l0", "variational_dropout"):
        with pytest.raises(ValueError, match=r"`num_examples` must be >= 1, got 0"):
            tfs.make_method(name, 0.9, 100, num_examples=0)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.core
def test_save_without_overwrite_asks_only_at_a_terminal(tmp_path, monkeypatch):
    sparse = tfs.sparsify(models.sequential(), tfs.MagnitudePruning(tfs.OneShot(0.5)))
    path = tmp_path / "model.keras"
    tfs.save(sparse, path)
    before = path.read_bytes()
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # A job: no terminal.
    with pytest.raises(FileExistsError, match=r"model\.keras' already exists.*overwrite=True"):
        tfs.save(sparse, path, overwrite=False)
    assert path.read_bytes() == before
    # At a terminal, "n" leaves the file exactly as it was.
    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    tfs.save(sparse, path, overwrite=False)
    assert path.read_bytes() == before
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    tfs.save(sparse, path, overwrite=False)
    assert len(tfs.sparse_layers(tfs.load(path))) == 2


@pytest.fixture
def registrations():
    saved = list(kernels_lib._registered)
    yield
    kernels_lib._registered[:] = saved


class Projection(keras.layers.Layer):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self, x):
        return ops.matmul(x, self.kernel)


def projection_model():
    inputs = keras.Input((6,))
    return keras.Model(inputs, Projection(name="proj")(inputs))


@pytest.mark.core
def test_registered_attributes_that_hold_no_weight_are_named(registrations):
    method = tfs.MagnitudePruning(tfs.OneShot(0.5))
    tfs.register_sparsifiable(Projection, ["kernal"])
    with pytest.raises(ValueError, match=r"'proj' \(Projection\) has no attribute 'kernal'.*Did you mean 'kernel'"):
        tfs.sparsify(projection_model(), method)
    tfs.register_sparsifiable(Projection, ["units"])
    with pytest.raises(ValueError, match=r"'proj' \(Projection\) has 'units' = 4 \(int\), not a weight"):
        tfs.sparsify(projection_model(), method)
    # A single layer is checked the same way.
    layer = Projection(name="alone")
    layer.build((None, 6))
    with pytest.raises(ValueError, match=r"'alone' \(Projection\) has 'units'"):
        tfs.sparsify(layer, method)
    # A method of the class is refused at registration.
    with pytest.raises(ValueError, match=r"register_sparsifiable\(Projection\): 'call' is a method"):
        tfs.register_sparsifiable(Projection, ["call"])
    tfs.register_sparsifiable(Projection, ["kernel"])
    sparse = tfs.sparsify(projection_model(), method)
    assert [path for path, _ in tfs.sparse_layers(sparse)] == ["proj"]
