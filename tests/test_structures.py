"""Structured sparsity: `tfs.Block`, `tfs.NM` on the pruning methods."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity import masks as mask_ops
from tf_sparsity.layers import kernels as kernels_lib

pytestmark = pytest.mark.core


def schedule(target, end_step=4):
    return tfs.PolynomialDecay(0.0, target, begin_step=0, end_step=end_step, frequency=1)


def mlp(sizes=(24, 16, 12, 8)):
    layers = [keras.Input((sizes[0],))]
    layers += [keras.layers.Dense(n, name=f"fc{i}") for i, n in enumerate(sizes[1:])]
    return keras.Sequential(layers)


def convnet():
    return keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(8, 3, name="conv"),
            keras.layers.Conv2DTranspose(4, 3, name="deconv"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, name="fc"),
        ]
    )


def masks_of(model):
    return {kernel.path: ops.convert_to_numpy(kernel.state.mask) for kernel in tfs.sparse_kernels(model)}


def input_axis(layer):
    (spec,) = kernels_lib.kernel_specs(layer)
    return spec.resolve_input_axis(layer)


def as_matrix(array, axis):
    """The structures' matrix view: input axis last, the rest flattened."""
    moved = np.moveaxis(array, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def train_to_end(model, steps=5):
    for step in range(steps + 1):
        tfs.update_masks(model, step)


def randomize(model, rng):
    for kernel in tfs.sparse_kernels(model):
        kernel.variable.assign(rng.normal(size=kernel.shape).astype("float32"))


def test_input_axes_of_the_layer_types():
    dense = keras.layers.Dense(3)
    dense.build((None, 5))
    conv = keras.layers.Conv2D(4, 3)
    conv.build((None, 8, 8, 2))
    deconv = keras.layers.Conv2DTranspose(4, 3)
    deconv.build((None, 8, 8, 2))
    # MultiHeadAttention's projections: "abc,cde->abde" and "abcd,cde->abe".
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    attention.build((None, 5, 6), (None, 5, 6))
    embedding = keras.layers.Embedding(10, 4)
    embedding.build((None,))
    assert input_axis(dense) == 0
    assert input_axis(conv) == 2
    assert input_axis(deconv) == 3  # (kh, kw, out, in)
    assert input_axis(attention._query_dense) == 0
    assert input_axis(attention._output_dense) == 1
    assert input_axis(embedding) is None


@pytest.mark.parametrize("method_class", [tfs.MagnitudePruning, tfs.RandomPruning])
def test_nm_keeps_exactly_n_of_every_m_along_the_input_axis(method_class, rng):
    model = convnet()
    sparse = tfs.sparsify(model, method_class(schedule(0.5), structure=tfs.NM(2, 4)))
    randomize(sparse, rng)
    train_to_end(sparse)
    axes = {"conv/kernel": 2, "deconv/kernel": 3, "fc/kernel": 0}
    for name, mask in masks_of(sparse).items():
        groups = as_matrix(mask, axes[name]).reshape(-1, 4)
        np.testing.assert_array_equal(groups.sum(axis=1), 2, err_msg=name)


def test_nm_keeps_the_largest_and_never_overprunes_a_group_on_the_way(rng):
    model = mlp((8, 4))
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule(0.75, end_step=3), structure=tfs.NM(1, 4)))
    randomize(sparse, rng)
    kernel = ops.convert_to_numpy(sparse.layers[0].kernels[0].variable)
    for step in range(5):
        tfs.update_masks(sparse, step)
        mask = masks_of(sparse)["fc0/kernel"]
        pruned = (1 - as_matrix(mask, 0)).reshape(-1, 4).sum(axis=1)
        assert pruned.max() <= 3
        target = schedule(0.75, end_step=3).sparsity(step)
        assert (1 - mask).sum() == mask_ops.num_to_prune(target, mask.size)
    groups = np.abs(as_matrix(kernel, 0)).reshape(-1, 4)
    kept = as_matrix(mask, 0).reshape(-1, 4)
    np.testing.assert_array_equal(kept.argmax(axis=1), groups.argmax(axis=1))


def test_block_masks_are_whole_blocks_with_exact_counts(rng):
    sparse = tfs.sparsify(mlp(), tfs.MagnitudePruning(schedule(0.75), structure=tfs.Block((2, 4))))
    randomize(sparse, rng)
    train_to_end(sparse)
    for name, mask in masks_of(sparse).items():
        matrix = as_matrix(mask, 0)
        rows, cols = matrix.shape
        blocks = matrix.reshape(rows // 2, 2, cols // 4, 4)
        assert np.all(blocks.min(axis=(1, 3)) == blocks.max(axis=(1, 3))), name
        pruned_blocks = (1 - blocks[:, 0, :, 0]).sum()
        assert pruned_blocks == mask_ops.num_to_prune(0.75, blocks[:, 0, :, 0].size)


def test_block_scores_are_mean_magnitudes():
    layer = keras.layers.Dense(1)
    layer.build((None, 8))
    # Two blocks of 4 inputs: mean |w| 1.0 (with one large weight) vs 1.5.
    layer.kernel.assign(np.array([[0.1], [0.1], [0.1], [3.7], [1.5], [1.5], [1.5], [1.5]], "float32"))
    wrapper = tfs.sparsify(layer, tfs.MagnitudePruning(schedule(0.5), structure=tfs.Block((1, 4))))
    train_to_end(wrapper)
    mask = ops.convert_to_numpy(wrapper.kernels[0].state.mask)
    np.testing.assert_array_equal(mask[:, 0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_partial_edge_blocks():
    # Input 10 with 1x4 blocks: columns 0-3, 4-7 and a partial block 8-9.
    layer = keras.layers.Dense(2)
    layer.build((None, 10))
    kernel = np.ones((10, 2), "float32")
    kernel[8:, 0] = 0.01  # The partial block of output 0 is the weakest.
    kernel[:4, 1] = 0.02  # Then the first block of output 1.
    layer.kernel.assign(kernel)
    wrapper = tfs.sparsify(layer, tfs.MagnitudePruning(schedule(1 / 3), structure=tfs.Block((1, 4))))
    assert tfs.Block((1, 4)).num_units((10, 2), 0) == 6
    train_to_end(wrapper)
    mask = ops.convert_to_numpy(wrapper.kernels[0].state.mask)
    expected = np.ones((10, 2))
    expected[8:, 0] = 0
    expected[:4, 1] = 0
    np.testing.assert_array_equal(mask, expected)


def test_random_blocks_global_scope_and_erk(rng):
    structure = tfs.Block((1, 4))
    sparse = tfs.sparsify(mlp(), tfs.RandomPruning(schedule(0.8), seed=3, structure=structure, scope="global"))
    train_to_end(sparse)
    units = sum(structure.num_units(m.shape, 0) for m in masks_of(sparse).values())
    pruned = 0
    for mask in masks_of(sparse).values():
        blocks = as_matrix(mask, 0).reshape(mask.shape[1], -1, 4)
        assert np.all(blocks.min(axis=2) == blocks.max(axis=2))
        pruned += (1 - blocks[:, :, 0]).sum()
    assert pruned == mask_ops.num_to_prune(0.8, units)

    erk = tfs.sparsify(mlp(), tfs.MagnitudePruning(schedule(0.8), structure=structure), distribution=tfs.ERK())
    randomize(erk, rng)
    train_to_end(erk)
    for (_, wrapper), mask in zip(tfs.sparse_layers(erk), masks_of(erk).values()):
        units = structure.num_units(mask.shape, 0)
        pruned = (1 - as_matrix(mask, 0)[:, ::4]).sum()
        assert pruned == mask_ops.num_to_prune(wrapper.target_sparsity, units)


def test_structured_conv_blocks_along_input_channels(rng):
    sparse = tfs.sparsify(convnet(), tfs.MagnitudePruning(schedule(0.5), structure=tfs.Block((1, 4))), layers=["conv"])
    randomize(sparse, rng)
    train_to_end(sparse)
    mask = masks_of(sparse)["conv/kernel"]  # (3, 3, 4 in, 8 out)
    per_position = mask.sum(axis=2)
    assert set(np.unique(per_position)) <= {0.0, 4.0}
    assert mask.mean() == 0.5


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tfs.MagnitudePruning(schedule(0.9), structure=tfs.NM(2, 4)), "fixes every kernel at sparsity 0.5"),
        (lambda: tfs.MagnitudePruning(schedule(0.5), structure=tfs.NM(2, 4), scope="global"), "scope"),
        (lambda: tfs.NM(4, 4), "less than"),
        (lambda: tfs.Block((0, 4)), "two positive ints"),
        (lambda: tfs.Block(4), "two positive ints"),
        (lambda: tfs.MagnitudePruning(schedule(0.5), structure="blocks"), "structure"),
    ],
)
def test_bad_structures(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_structure_errors_name_the_layer():
    with pytest.raises(ValueError, match="layer 'fc1'.*multiple of 4, got 10"):
        tfs.sparsify(mlp((24, 10, 8)), tfs.MagnitudePruning(schedule(0.5), structure=tfs.NM(2, 4)))
    with pytest.raises(ValueError, match="fc.*asked for"):
        tfs.sparsify(mlp((24, 16, 8)), tfs.MagnitudePruning(schedule(0.5), structure=tfs.NM(2, 4)), distribution=tfs.ERK())
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 8, name="tokens"), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="input \\(contraction\\) axis, and layer 'tokens'"):
        tfs.sparsify(model, tfs.MagnitudePruning(schedule(0.5), structure=tfs.Block((1, 4))))
    # Keeping it out works.
    tfs.sparsify(model, tfs.MagnitudePruning(schedule(0.5), structure=tfs.Block((1, 4))), layers=[keras.layers.Dense])


def test_config_round_trip():
    for method in [
        tfs.MagnitudePruning(schedule(0.5), structure=tfs.NM(2, 4)),
        tfs.RandomPruning(schedule(0.9), seed=1, structure=tfs.Block((2, 8))),
        tfs.MagnitudePruning(schedule(0.9)),
    ]:
        config = keras.saving.serialize_keras_object(method)
        assert keras.saving.deserialize_keras_object(config) == method
    made = tfs.make_method("magnitude", 0.9, 100, structure=tfs.Block((1, 4)))
    assert made.structure == tfs.Block((1, 4))


def test_structured_masks_survive_strip_save_load_and_resume(tmp_path, rng):
    x = rng.normal(size=(64, 24)).astype("float32")
    y = rng.normal(size=(64, 8)).astype("float32")

    def build():
        keras.utils.set_random_seed(5)
        method = tfs.MagnitudePruning(
            tfs.PolynomialDecay(0.0, 0.5, begin_step=1, end_step=12, frequency=2), structure=tfs.NM(2, 4)
        )
        model = tfs.sparsify(mlp(), method)
        model.compile(keras.optimizers.Adam(1e-2), "mse")
        return model

    fit = dict(x=x, y=y, batch_size=16, shuffle=False, verbose=0)
    reference = build()
    reference.fit(epochs=4, callbacks=[tfs.SparsityCallback()], **fit)

    resumed = build()
    resumed.fit(epochs=2, callbacks=[tfs.SparsityCallback()], **fit)
    path = str(tmp_path / "mid.keras")
    resumed.save(path)
    resumed = keras.saving.load_model(path)
    resumed.fit(epochs=4, initial_epoch=2, callbacks=[tfs.SparsityCallback()], **fit)
    for name, mask in masks_of(reference).items():
        np.testing.assert_array_equal(masks_of(resumed)[name], mask, err_msg=name)
        assert (as_matrix(mask, 0).reshape(-1, 4).sum(axis=1) == 2).all()

    expected = reference.predict(x, verbose=0)
    np.testing.assert_allclose(tfs.strip(reference).predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    tfs.save(reference, tmp_path / "saved.keras")
    loaded = tfs.load(tmp_path / "saved.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    assert loaded.layers[0].method.structure == tfs.NM(2, 4)


@pytest.mark.tensorflow
def test_structured_masks_survive_export(tmp_path, rng):
    import tensorflow as tf

    x = rng.normal(size=(8, 24)).astype("float32")
    sparse = tfs.sparsify(mlp(), tfs.MagnitudePruning(schedule(0.75), structure=tfs.Block((1, 4))))
    randomize(sparse, rng)
    train_to_end(sparse)
    tfs.export_saved_model(sparse, tmp_path / "export" / "1")
    served = tf.saved_model.load(str(tmp_path / "export" / "1"))
    out = served.signatures["serving_default"](tf.constant(x))
    np.testing.assert_allclose(list(out.values())[0].numpy(), sparse.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    kernels = [v.numpy() for v in served.variables if v.shape == (24, 16)]
    assert len(kernels) == 1 and np.mean(kernels[0] == 0) == 0.75


def test_command_line_spellings():
    from tf_sparsity import structures

    assert structures.parse("1x4") == tfs.Block((1, 4))
    assert structures.parse("2:4") == tfs.NM(2, 4)
    assert structures.parse("unstructured") == tfs.Unstructured()
    for bad in ["4", "1x", "ax4", "4:4", "0x4"]:
        with pytest.raises(ValueError, match="structure"):
            structures.parse(bad)


@pytest.mark.tensorflow
def test_tasks_take_a_structure():
    from tf_sparsity_models.common import runner
    from tf_sparsity_models.resnet50 import configs

    config = configs.make_config("magnitude_90", {"structure": "1x4", "steps": 100})
    assert runner.make_method(config).structure == tfs.Block((1, 4))
    assert runner.make_method(configs.make_config("magnitude_90")).structure == tfs.Unstructured()
    with pytest.raises(ValueError, match="fixes every kernel at sparsity 0.5"):
        runner.make_method(configs.make_config("magnitude_90", {"structure": "2:4"}))


def numpy_nm_move(mask, drop, grow, num_moved, n, m):
    """NM drop-and-grow in plain NumPy on an (in, out) kernel: drop the
    `num_moved` live weights of smallest score (ties by flat position), then
    each group of `m` inputs regrows as many as it lost, highest grow score
    first (ties by position)."""
    flat = mask.ravel() > 0
    order = [i for i in np.argsort(np.where(flat, drop.ravel(), np.inf), kind="stable") if flat[i]]
    kept = flat.copy()
    kept[order[:num_moved]] = False
    kept = kept.reshape(mask.shape)
    new = kept.copy()
    for col in range(mask.shape[1]):
        for start in range(0, mask.shape[0], m):
            rows = np.arange(start, start + m)
            lost = n - kept[rows, col].sum()
            dead = [r for r in rows if not kept[r, col]]
            dead.sort(key=lambda r: (-grow[r, col], r))
            new[dead[:lost], col] = True
    return new.astype("float32"), kept.astype("float32")


@pytest.mark.parametrize("num_moved", [0, 3, 10])
def test_nm_move_equals_a_numpy_version(num_moved, rng):
    structure = tfs.NM(2, 4)
    shape = (8, 5)
    mask = np.zeros(shape, "float32")
    for col in range(shape[1]):
        for start in (0, 4):
            mask[start + rng.choice(4, 2, replace=False), col] = 1
    drop = rng.normal(size=shape).astype("float32")
    grow = np.round(rng.normal(size=shape), 1).astype("float32")  # Some ties.
    new, kept = structure.move(
        ops.convert_to_tensor(mask), ops.convert_to_tensor(drop), ops.convert_to_tensor(grow), num_moved, 0
    )
    expected_new, expected_kept = numpy_nm_move(mask, drop, grow, num_moved, 2, 4)
    np.testing.assert_array_equal(ops.convert_to_numpy(kept), expected_kept)
    np.testing.assert_array_equal(ops.convert_to_numpy(new), expected_new)
