"""Structured pruning: `tfs.Units`, `tfs.Heads`, dependency groups and
`tfs.shrink` (exactness on the models people have, coupling, refusals,
training, saving, and the scores against NumPy)."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import tf_sparsity as tfs
from tf_sparsity import dependency
from tests.litert_runner import run_tflite

pytestmark = pytest.mark.core


def _prune(model, structure, sparsity=0.5, **kwargs):
    method = tfs.MagnitudePruning(tfs.ConstantSparsity(sparsity, 0), structure=structure, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = tfs.sparsify(model, method)
    tfs.update_masks(sparse, 0)
    return sparse


def _outputs(model, x):
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(model(x, training=False))]


def _assert_same_outputs(a, b, x, atol=1e-5):
    for left, right in zip(_outputs(a, x), _outputs(b, x)):
        np.testing.assert_allclose(left, right, atol=atol, rtol=1e-5)


def _mlp():
    return keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(32, activation="relu", name="hidden1"),
            keras.layers.Dense(16, activation="relu", name="hidden2"),
            keras.layers.Dense(3, name="logits"),
        ]
    )


def _tiny_resnet():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    for block in range(2):
        y = keras.layers.Conv2D(8, 3, padding="same", name=f"b{block}_conv1")(x)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn1")(y)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(8, 3, padding="same", name=f"b{block}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"b{block}_bn2")(y)
        x = keras.layers.ReLU()(keras.layers.Add(name=f"b{block}_add")([x, y]))
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Concatenate(name="concat")([x, y])
    x = keras.layers.Conv2D(6, 1, name="mix")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="tiny_resnet")
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Statistics far from identity, so a wrongly sliced channel shows.
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))
            layer.gamma.assign(rng.normal(size=layer.gamma.shape))
            layer.beta.assign(rng.normal(size=layer.beta.shape))
    return model


def _attention_model():
    inputs = keras.Input((6, 16))
    attended = keras.layers.MultiHeadAttention(4, 8, name="attention")(inputs, inputs)
    x = keras.layers.LayerNormalization(name="norm1")(keras.layers.Add()([inputs, attended]))
    h = keras.layers.Dense(32, activation="gelu", name="ffn_in")(x)
    h = keras.layers.Dense(16, name="ffn_out")(h)
    x = keras.layers.Add()([x, h])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def _encoder_stack():
    keras_hub = pytest.importorskip("keras_hub")
    inputs = keras.Input((6, 16))
    x = inputs
    for i in range(2):
        x = keras_hub.layers.TransformerEncoder(32, 4, name=f"encoder_{i}")(x)
    return keras.Model(inputs, x)


def _bert():
    keras_hub = pytest.importorskip("keras_hub")
    return keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )


def _bert_inputs(rng):
    return {
        "token_ids": rng.integers(0, 50, (3, 8)).astype("int32"),
        "segment_ids": np.zeros((3, 8), "int32"),
        "padding_mask": np.ones((3, 8), "int32"),
    }


@pytest.fixture(scope="module")
def encoder_stack_case():
    """The keras-hub encoder stack with a quarter of its FFN units pruned:
    `(sparse, shrunk, inputs)`, built once for the tests that read it."""
    sparse = _prune(_encoder_stack(), tfs.Units(), sparsity=0.25)
    x = np.random.default_rng(5).normal(size=(3, 6, 16)).astype("float32")
    return sparse, tfs.shrink(sparse), x


@pytest.fixture(scope="module")
def bert_case():
    """The tiny `BertBackbone` with half its FFN units pruned: `(sparse,
    shrunk, inputs)`."""
    sparse = _prune(_bert(), tfs.Units())
    return sparse, tfs.shrink(sparse), _bert_inputs(np.random.default_rng(6))


def _kernel_shapes(model):
    return {
        layer.name: tuple(int(d) for d in layer.kernel.shape)
        for layer in model.layers
        if hasattr(layer, "kernel") and not isinstance(layer, keras.Model)
    }


# --- exactness ----------------------------------------------------------------


def test_mlp_loses_half_its_hidden_units_with_the_same_outputs(rng):
    sparse = _prune(_mlp(), tfs.Units())
    x = rng.normal(size=(5, 20)).astype("float32")
    small = tfs.shrink(sparse)
    assert isinstance(small, keras.Sequential)
    assert _kernel_shapes(small) == {"hidden1": (20, 16), "hidden2": (16, 8), "logits": (8, 3)}
    _assert_same_outputs(sparse, small, x)
    assert small.count_params() == 20 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3


def test_residual_group_removes_the_same_channels_in_every_member(rng):
    sparse = _prune(_tiny_resnet(), tfs.Units())
    masks = {k.layer.name: np.asarray(keras.ops.convert_to_numpy(k.state.mask)) for k in tfs.sparse_kernels(sparse)}
    live = {name: masks[name].reshape(-1, masks[name].shape[-1]).any(axis=0) for name in ("stem", "b0_conv2", "b1_conv2")}
    # One group: the stem and both blocks' last convolutions feed the adds.
    assert live["stem"].sum() == 4
    assert (live["stem"] == live["b0_conv2"]).all() and (live["stem"] == live["b1_conv2"]).all()
    # Readers lose the same input channels: the blocks' first convolutions,
    # the depthwise filters, and both halves of the concatenation.
    for reader in ("b0_conv1", "b1_conv1"):
        rows = masks[reader].any(axis=(0, 1, 3))
        assert (rows == live["stem"]).all()
    assert (masks["depthwise"].any(axis=(0, 1, 3)) == live["stem"]).all()
    mix_rows = masks["mix"].any(axis=(0, 1, 3))
    assert (mix_rows[:8] == live["stem"]).all() and (mix_rows[8:] == live["stem"]).all()

    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    small = tfs.shrink(sparse)
    shapes = _kernel_shapes(small)
    assert shapes["stem"] == (3, 3, 3, 4)
    assert shapes["b0_conv1"] == (3, 3, 4, 4)
    assert shapes["depthwise"] == (3, 3, 4, 1)
    assert shapes["mix"] == (1, 1, 8, 3)
    # Flatten after a 4x4 map of 3 channels: spatial x channels rows.
    assert shapes["logits"] == (4 * 4 * 3, 10)
    assert tuple(small.get_layer("b1_bn2").moving_mean.shape) == (4,)
    _assert_same_outputs(sparse, small, x)


def test_attention_heads_are_removed_with_their_projections(rng):
    sparse = _prune(_attention_model(), tfs.Heads())
    x = rng.normal(size=(3, 6, 16)).astype("float32")
    small = tfs.shrink(sparse)
    attention = small.get_layer("attention")
    assert attention.num_heads == 2
    assert tuple(attention._query_dense.kernel.shape) == (16, 2, 8)
    assert tuple(attention._output_dense.kernel.shape) == (2, 8, 16)
    _assert_same_outputs(sparse, small, x)


def test_feed_forward_units_of_an_attention_model(rng):
    sparse = _prune(_attention_model(), tfs.Units())
    small = tfs.shrink(sparse)
    assert _kernel_shapes(small)["ffn_in"] == (16, 16)
    assert _kernel_shapes(small)["ffn_out"] == (16, 16)
    _assert_same_outputs(sparse, small, rng.normal(size=(3, 6, 16)).astype("float32"))


@pytest.mark.slow
def test_keras_hub_encoder_stack_shrinks_its_feed_forward_units(encoder_stack_case):
    sparse, small, x = encoder_stack_case
    for i in range(2):
        encoder = small.get_layer(f"encoder_{i}")
        assert encoder.intermediate_dim == 24
        assert tuple(encoder._feedforward_intermediate_dense.kernel.shape) == (16, 24)
    _assert_same_outputs(sparse, small, x)


def test_keras_hub_encoder_heads_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"encoder_0.*num_heads"):
        tfs.sparsify(
            _encoder_stack(),
            tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, 0), structure=tfs.Heads()),
        )


@pytest.mark.slow
def test_bert_backbone_keeps_its_class_with_a_smaller_intermediate_dim(bert_case):
    import keras_hub

    sparse, small, inputs = bert_case
    assert type(small) is keras_hub.models.BertBackbone
    assert small.get_config()["intermediate_dim"] == 16
    _assert_same_outputs(sparse, small, inputs)


def test_bert_backbone_with_uneven_layers_names_the_shared_field(rng):
    backbone = _bert()
    sparse = _prune(backbone, tfs.Units())
    # One layer loses one more unit than the other: BertBackbone's config
    # has one `intermediate_dim` for all layers.
    kernel = next(
        k for k in tfs.sparse_kernels(sparse) if k.path.endswith("feedforward_output_dense/kernel")
        and "transformer_layer_0" in k.path
    )
    mask = np.asarray(keras.ops.convert_to_numpy(kernel.state.mask))
    row = int(np.flatnonzero(mask.any(axis=1))[0])
    mask[row] = 0
    kernel.state.mask.assign(mask)
    with pytest.raises(ValueError, match=r"intermediate_dim.*one value for all"):
        tfs.shrink(sparse)


def test_dependency_groups_are_analyzed_once_per_model_until_its_layers_change():
    model = _mlp()
    found = dependency.analyze(model)
    sparse = _prune(model, tfs.Units())  # sparsify and the first update read it
    assert dependency.analyze(sparse) is found
    assert tfs.sparse_kernels(sparse)[0].layer is found.groups[0].producers[0]
    # Another layer tree: analyzed again.
    other = _mlp()
    before = dependency.analyze(other)
    other.pop()
    other.add(keras.layers.Dense(3, name="head"))
    after = dependency.analyze(other)
    assert after is not before and after.groups[-1].couplings[-1].layer.name == "head"


# --- what is refused ------------------------------------------------------------


def test_an_output_layer_chosen_by_name_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"'logits'.*output of model"):
        tfs.sparsify(
            _mlp(),
            tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, 0), structure=tfs.Units()),
            layers=["logits"],
        )


class _Shuffle(keras.layers.Layer):
    """Mixes channels in a way the analysis cannot know."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)


def test_units_flowing_into_an_unknown_layer_stay_and_are_named(rng):
    inputs = keras.Input((10,))
    x = keras.layers.Dense(8, name="before")(inputs)
    x = _Shuffle(name="shuffle")(x)
    x = keras.layers.Dense(8, name="after")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    found = dependency.analyze(model)
    assert "shuffle" in found.refused["before"] and "shuffle" in found.reason_for(model.get_layer("before"))
    with pytest.warns(UserWarning, match=r"'before'.*shuffle"):
        sparse = tfs.sparsify(
            model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, 0), structure=tfs.Units())
        )
    assert {layer.name for layer, *_ in [(k.layer,) for k in tfs.sparse_kernels(sparse)]} == {"after", "out"}
    tfs.update_masks(sparse, 0)
    small = tfs.shrink(sparse)
    assert _kernel_shapes(small)["before"] == (10, 8)
    assert _kernel_shapes(small)["after"] == (8, 4)
    _assert_same_outputs(sparse, small, rng.normal(size=(4, 10)).astype("float32"))


def test_a_subclassed_model_names_why_its_layers_stay():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.first = keras.layers.Dense(8)
            self.second = keras.layers.Dense(2)

        def call(self, x):
            return self.second(self.first(x))

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"subclassed model"):
        tfs.sparsify(net, tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, 0), structure=tfs.Units()))


def test_dynamic_sparse_methods_refuse_units():
    with pytest.raises(ValueError, match=r"only pruning methods"):
        tfs.SET(0.5, end_step=1000, structure=tfs.Units())


def test_a_group_too_small_for_its_target_is_refused_naming_it():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="tiny"), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"'tiny'.*2 unit"):
        tfs.sparsify(model, tfs.MagnitudePruning(tfs.ConstantSparsity(0.8, 0), structure=tfs.Units()))


# --- scores and scopes against NumPy ------------------------------------------


@pytest.mark.parametrize("score", ["l2", "l1"])
def test_units_removed_are_the_lowest_by_the_norm_of_all_their_weights(score, rng):
    model = _mlp()
    sparse = _prune(model, tfs.Units(score=score), sparsity=0.25)
    first, second = (np.asarray(keras.ops.convert_to_numpy(model.get_layer(n).kernel)) for n in ("hidden1", "hidden2"))
    # Units of hidden1: its kernel's columns and hidden2's rows.
    weights = np.concatenate([first, second.T], axis=0)
    power = 2 if score == "l2" else 1
    scores = (np.abs(weights) ** power).mean(axis=0)
    expected = np.sort(np.argsort(scores, kind="stable")[:8])
    mask = np.asarray(keras.ops.convert_to_numpy(tfs.sparse_kernels(sparse)[0].state.mask))
    assert (np.flatnonzero(~mask.any(axis=0)) == expected).all()


def test_global_scope_ranks_units_of_all_groups_together():
    model = _mlp()
    # Every weight of hidden2's units (its columns, the logits' rows) is
    # tiny: a global ranking takes its units first.
    for name in ("hidden2", "logits"):
        layer = model.get_layer(name)
        layer.kernel.assign(layer.kernel * 1e-3)
    sparse = _prune(model, tfs.Units(), sparsity=0.25, scope="global")
    removed = {
        k.layer.name: int((~np.asarray(keras.ops.convert_to_numpy(k.state.mask)).any(axis=0)).sum())
        for k in tfs.sparse_kernels(sparse)
    }
    # 25% of 48 units in all, all from hidden2 (its own columns, and
    # hidden2's rows are its readers, so hidden1 loses none).
    assert removed["hidden2"] == 12 and removed["hidden1"] == 0


def test_taylor_scores_record_the_gradient(rng):
    model = _mlp()
    method = tfs.MagnitudePruning(
        tfs.ConstantSparsity(0.5, begin_step=1, frequency=1), structure=tfs.Units(score="taylor")
    )
    assert method.needs_gradient
    sparse = tfs.sparsify(model, method)
    sparse.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(64, 20)).astype("float32")
    y = rng.integers(0, 3, 64)
    sparse.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    kernel = tfs.sparse_kernels(sparse)[0]
    assert np.abs(keras.ops.convert_to_numpy(kernel.state.gradient)).sum() > 0
    mask = np.asarray(keras.ops.convert_to_numpy(kernel.state.mask))
    assert (~mask.any(axis=0)).sum() == 16


def test_taylor_scores_before_any_training_step_are_refused_naming_the_groups():
    sparse = tfs.sparsify(
        _mlp(), tfs.MagnitudePruning(tfs.ConstantSparsity(0.5, 0), structure=tfs.Units(score="taylor"))
    )
    with pytest.raises(ValueError, match=r"step 0.*'hidden1'.*'hidden2'.*step 1 or later"):
        tfs.update_masks(sparse, 0)
    # Raised before any mask changed.
    for kernel in tfs.sparse_kernels(sparse):
        assert np.asarray(keras.ops.convert_to_numpy(kernel.state.mask)).all()


def test_taylor_heads_one_shot_needs_a_training_step_first(rng):
    x = rng.normal(size=(16, 6, 16)).astype("float32")
    y = rng.integers(0, 2, 16)

    def fit(step):
        method = tfs.MagnitudePruning(tfs.OneShot(0.5, step=step), structure=tfs.Heads(score="taylor"))
        sparse = tfs.sparsify(_attention_model(), method)
        sparse.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        sparse.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
        return sparse

    with pytest.raises(ValueError, match=r"heads of 'attention'.*OneShot\(s, step=1\)"):
        fit(0)
    sparse = fit(1)
    assert tfs.shrink(sparse).get_layer("attention").num_heads == 2


# --- training, saving, serving ------------------------------------------------------


def test_gradual_pruning_in_fit_then_shrink(rng, tmp_path):
    schedule = tfs.PolynomialDecay(0.0, 0.75, begin_step=2, end_step=10, frequency=2)
    sparse = tfs.sparsify(_mlp(), tfs.MagnitudePruning(schedule, structure=tfs.Units()))
    sparse.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(96, 20)).astype("float32")
    y = rng.integers(0, 3, 96)
    removed, callback = [], tfs.SparsityCallback()
    for step in range(12):  # One step per fit: masks read between steps.
        batch = slice(16 * (step % 6), 16 * (step % 6 + 1))
        sparse.fit(x[batch], y[batch], batch_size=16, verbose=0, callbacks=[callback])
        mask = np.asarray(keras.ops.convert_to_numpy(tfs.sparse_kernels(sparse)[0].state.mask))
        removed.append(int((~mask.any(axis=0)).sum()))
    # 0 until step 2, then more at every update, 75% of 32 from step 10 on.
    assert removed[:2] == [0, 0]
    assert removed == sorted(removed) and len(set(removed)) > 3 and removed[-1] == 24
    # Pruned units stay pruned while their weights train on the rest.
    small = tfs.shrink(sparse)
    assert _kernel_shapes(small)["hidden1"] == (20, 8)
    _assert_same_outputs(sparse, small, x[:8])

    # The sparse model saves and loads with its masks and goes on pruning.
    path = str(tmp_path / "sparse.keras")
    tfs.save(sparse, path)
    restored = tfs.load(path)
    _assert_same_outputs(sparse, restored, x[:8])
    tfs.update_masks(restored, 10)
    assert _kernel_shapes(tfs.shrink(restored)) == _kernel_shapes(small)


def _save_arrays(path, value):
    """Saves an input (an array or a dict of them) or a list of outputs."""
    if isinstance(value, dict):
        np.savez(path, **value)
    else:
        np.savez(path, *keras.tree.flatten(value))


@pytest.mark.tensorflow
@pytest.mark.slow
def test_shrunk_models_load_and_serve_without_tf_sparsity(rng, tmp_path, encoder_stack_case, bert_case):
    cases = {
        "mlp": (_prune(_mlp(), tfs.Units()), rng.normal(size=(4, 20)).astype("float32")),
        "resnet": (_prune(_tiny_resnet(), tfs.Units()), rng.normal(size=(2, 8, 8, 3)).astype("float32")),
        "attention": (_prune(_attention_model(), tfs.Heads()), rng.normal(size=(2, 6, 16)).astype("float32")),
        "encoder_stack": (encoder_stack_case[0], encoder_stack_case[2]),
        "bert": (bert_case[0], bert_case[2]),
    }
    shrunk = {"encoder_stack": encoder_stack_case[1], "bert": bert_case[1]}
    expected = {}
    for name, (sparse, x) in cases.items():
        small = shrunk[name] if name in shrunk else tfs.shrink(sparse)
        assert "tf_sparsity" not in json.dumps(small.get_config(), default=str)
        small.save(str(tmp_path / f"{name}.keras"))
        tfs.export_saved_model(small, str(tmp_path / f"{name}_served"))
        _save_arrays(tmp_path / f"{name}_x.npz", x)
        expected[name] = _outputs(sparse, x)
    # One process for all models, where importing tf_sparsity fails: the
    # files must load with Keras (and keras-hub for its classes) alone.
    script = (
        "import sys\n"
        "sys.modules['tf_sparsity'] = None\n"
        "import numpy as np, keras, keras_hub, tensorflow as tf\n"
        "d, names = sys.argv[1], sys.argv[2:]\n"
        "for name in names:\n"
        "    with np.load(f'{d}/{name}_x.npz') as f:\n"
        "        x = {k: f[k] for k in f.files}\n"
        "    x = x['arr_0'] if list(x) == ['arr_0'] else x\n"
        "    loaded = keras.saving.load_model(f'{d}/{name}.keras')\n"
        "    a = keras.tree.flatten(loaded(x, training=False))\n"
        "    served = tf.saved_model.load(f'{d}/{name}_served')\n"
        "    b = keras.tree.flatten(served.serve(tf.nest.map_structure(tf.constant, x)))\n"
        "    np.savez(f'{d}/{name}_loaded.npz', *[np.asarray(t) for t in a])\n"
        "    np.savez(f'{d}/{name}_served.npz', *[np.asarray(t) for t in b])\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *cases], check=True, env=env, timeout=300
    )
    for name, want in expected.items():
        for kind in ("loaded", "served"):
            with np.load(tmp_path / f"{name}_{kind}.npz") as got:
                assert len(got.files) == len(want), (name, kind)
                for i, value in enumerate(want):
                    np.testing.assert_allclose(got[f"arr_{i}"], value, atol=1e-5, err_msg=f"{name} {kind}")


@pytest.mark.tensorflow
@pytest.mark.slow
def test_shrunk_models_export_to_litert_with_the_same_outputs(rng, tmp_path):
    pytest.importorskip("ai_edge_litert")
    cases = {
        "resnet": (_prune(_tiny_resnet(), tfs.Units()), rng.normal(size=(3, 8, 8, 3)).astype("float32")),
        "attention": (_prune(_attention_model(), tfs.Heads()), rng.normal(size=(3, 6, 16)).astype("float32")),
    }
    for name, (sparse, x) in cases.items():
        small = tfs.shrink(sparse)
        report = tfs.export_litert(small, tmp_path / f"{name}.tflite", print_fn=None)
        # Float32 sums in another order: equal to a few ulps.
        np.testing.assert_allclose(
            run_tflite(report.path, x), _outputs(small, x)[0], rtol=1e-5, atol=1e-5, err_msg=name
        )
        np.testing.assert_allclose(_outputs(small, x)[0], _outputs(sparse, x)[0], rtol=1e-5, atol=1e-5)


def test_random_pruning_takes_units_too(rng):
    method = tfs.RandomPruning(tfs.ConstantSparsity(0.5, 0), structure=tfs.Units(), seed=3)
    sparse = tfs.sparsify(_mlp(), method)
    tfs.update_masks(sparse, 0)
    small = tfs.shrink(sparse)
    assert _kernel_shapes(small)["hidden1"] == (20, 16)
    _assert_same_outputs(sparse, small, rng.normal(size=(4, 20)).astype("float32"))


def test_structures_round_trip_their_config_and_spelling():
    for structure in (tfs.Units(), tfs.Units(score="taylor"), tfs.Heads(score="l1")):
        config = keras.saving.serialize_keras_object(structure)
        again = keras.saving.deserialize_keras_object(config)
        assert type(again) is type(structure) and again.score == structure.score
    from tf_sparsity import structures

    assert isinstance(structures.parse("units"), tfs.Units)
    assert isinstance(structures.parse("Heads"), tfs.Heads)
    with pytest.raises(ValueError, match="score"):
        tfs.Units(score="l3")


def test_summary_lists_unit_groups_and_the_layers_kept_whole():
    sparse = _prune(_mlp(), tfs.Units())
    lines = []
    report = tfs.sparsity_summary(sparse, print_fn=lines.append)
    assert [(g.name, g.size, g.live) for g in report.unit_groups] == [
        ("units of 'hidden1'", 32, 16),
        ("units of 'hidden2'", 16, 8),
    ]
    assert report.kept_whole[0][0] == "logits"
    assert "Units kept whole" in lines[0] and "output of model" in lines[0]


def test_one_shot_then_fine_tuning_keeps_the_units_removed(rng):
    # The tiny ResNet (BatchNorm in training mode, residual groups) pruned
    # to half its filters at step 0, then fine-tuned.
    sparse = tfs.sparsify(
        _tiny_resnet(), tfs.MagnitudePruning(tfs.OneShot(0.5, step=0), structure=tfs.Units())
    )
    sparse.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 32)
    sparse.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfs.SparsityCallback()])
    report = tfs.sparsity_summary(sparse, print_fn=None)
    assert {g.name: g.live for g in report.unit_groups}["units of 'stem', 'b0_conv2', 'b1_conv2'"] == 4
    assert all(g.live == g.size - round(0.5 * g.size) for g in report.unit_groups)
    small = tfs.shrink(sparse)
    assert _kernel_shapes(small)["b0_conv1"] == (3, 3, 4, 4)
    _assert_same_outputs(sparse, small, x[:4])
