"""One-shot pruning (`tfs.prune_oneshot`): each algorithm against a plain
NumPy version of it, the (out, in) view of Keras kernels, and the
block-by-block calibration pass on models that are not language models."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity.oneshot import InputStatistics
from tf_sparsity.oneshot import LinearView
from tf_sparsity.oneshot import OneShotMagnitude
from tf_sparsity.oneshot import SparseGPT
from tf_sparsity.oneshot import Wanda

pytestmark = pytest.mark.core


# --- Plain NumPy versions of the papers' algorithms -------------------------


def numpy_sparsegpt(W, X, num_samples, sparsity, blocksize, percdamp=0.01, nm=None):
    """SparseGPT as Algorithm 1 of the paper states it, in float64 and
    without lazy batching: every column's error updates all later columns at
    once; the mask of each `blocksize` columns is chosen when the sweep
    reaches the block (N:M: each group of m when it reaches the group)."""
    W = W.astype(np.float64).copy()
    X = X.astype(np.float64)
    rows, cols = W.shape
    H = 2.0 / num_samples * X.T @ X
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * np.mean(np.diag(H)) * np.eye(cols)
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    keep = np.ones_like(W)
    for i in range(cols):
        if nm is None and i % blocksize == 0:
            end = min(i + blocksize, cols)
            scores = (W[:, i:end] ** 2 / np.diag(U)[i:end] ** 2).ravel()
            count = int(np.floor(sparsity * scores.size + 0.5))
            block = np.ones(scores.size)
            block[np.argsort(scores, kind="stable")[:count]] = 0
            keep[:, i:end] = block.reshape(rows, end - i)
        if nm is not None and i % nm[1] == 0:
            n, m = nm
            scores = W[:, i : i + m] ** 2 / np.diag(U)[i : i + m] ** 2
            group = np.ones_like(scores)
            np.put_along_axis(group, np.argsort(scores, axis=1, kind="stable")[:, : m - n], 0, axis=1)
            keep[:, i : i + m] = group
        w = W[:, i].copy()
        error = w * (1 - keep[:, i]) / U[i, i]
        W[:, i:] -= np.outer(error, U[i, i:])
        W[:, i] = w * keep[:, i]
    return W, keep


def numpy_wanda(W, X, sparsity):
    """Wanda: |W| * ||X_j||_2, the lowest `sparsity` of each row removed."""
    scores = np.abs(W) * np.linalg.norm(X, axis=0)[None, :]
    keep = np.ones_like(W)
    count = int(np.floor(sparsity * W.shape[1] + 0.5))
    np.put_along_axis(keep, np.argsort(scores, axis=1, kind="stable")[:, :count], 0, axis=1)
    return W * keep, keep


def dense_view(rows, cols):
    layer = keras.layers.Dense(rows, use_bias=False)
    layer.build((None, cols))
    return layer, LinearView(layer, "layer 'dense'")


def statistics_of(view, X, second_moment):
    stats = InputStatistics(view, second_moment=second_moment)
    for batch in X:
        stats.update(batch)
    return stats


@pytest.fixture
def problem(rng):
    rows, cols = 12, 32
    W = rng.normal(size=(rows, cols)).astype("float32")
    # 3 batches of 2 sequences x 10 tokens; one input feature always zero
    # (a "dead" input) and a few much larger than the rest.
    X = rng.normal(size=(3, 2, 10, cols)).astype("float32")
    X[..., 3] = 0.0
    X[..., [5, 17]] *= 20.0
    return W, X


@pytest.mark.parametrize(
    "structure, nm, blocksize",
    [(None, None, 8), (None, None, 32), (None, None, 12), ("2:4", (2, 4), 8), ("4:8", (4, 8), 16)],
)
def test_sparsegpt_equals_the_papers_algorithm_in_numpy(problem, structure, nm, blocksize):
    W, X = problem
    _, view = dense_view(*W.shape)
    stats = statistics_of(view, X, second_moment=True)
    method = SparseGPT(0.5, tfs.structures.parse(structure) if structure else None, blocksize=blocksize)
    new, keep = method.prune_matrix(ops.convert_to_tensor(W), stats)
    new, keep = ops.convert_to_numpy(new), ops.convert_to_numpy(keep)
    expected, expected_keep = numpy_sparsegpt(
        W, X.reshape(-1, W.shape[1]), num_samples=6, sparsity=0.5, blocksize=blocksize, nm=nm
    )
    np.testing.assert_array_equal(keep, expected_keep)
    np.testing.assert_allclose(new, expected, rtol=1e-4, atol=1e-4)
    assert np.all(new[keep == 0] == 0.0)
    assert np.all(new[:, 3] == 0.0)  # the dead input's weights
    if nm is None:
        for start in range(0, W.shape[1], blocksize):
            block = keep[:, start : start + blocksize]
            assert block.size - block.sum() == int(np.floor(0.5 * block.size + 0.5))
    else:
        groups = keep.reshape(W.shape[0], -1, nm[1]).sum(axis=-1)
        assert np.all(groups == nm[0])


def test_sparsegpt_reconstructs_better_than_zeroing_its_own_mask(problem):
    """The OBS update is what SparseGPT adds: with the same mask, its
    weights reproduce W X better than the original weights masked."""
    W, X = problem
    _, view = dense_view(*W.shape)
    stats = statistics_of(view, X, second_moment=True)
    new, keep = SparseGPT(0.5, blocksize=8).prune_matrix(ops.convert_to_tensor(W), stats)
    new, keep = ops.convert_to_numpy(new), ops.convert_to_numpy(keep)
    inputs = X.reshape(-1, W.shape[1])
    error_updated = np.linalg.norm(inputs @ W.T - inputs @ new.T)
    error_masked = np.linalg.norm(inputs @ W.T - inputs @ (W * keep).T)
    assert error_updated < error_masked


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_wanda_equals_the_score_top_k_per_row(problem, sparsity):
    W, X = problem
    _, view = dense_view(*W.shape)
    stats = statistics_of(view, X, second_moment=False)
    new, keep = Wanda(sparsity).prune_matrix(ops.convert_to_tensor(W), stats)
    expected, expected_keep = numpy_wanda(W, X.reshape(-1, W.shape[1]), sparsity)
    np.testing.assert_array_equal(ops.convert_to_numpy(keep), expected_keep)
    np.testing.assert_array_equal(ops.convert_to_numpy(new), expected)
    per_row = W.shape[1] - ops.convert_to_numpy(keep).sum(axis=1)
    assert np.all(per_row == int(np.floor(sparsity * W.shape[1] + 0.5)))


def test_wanda_nm_keeps_the_n_highest_scores_of_each_group(problem):
    W, X = problem
    _, view = dense_view(*W.shape)
    stats = statistics_of(view, X, second_moment=False)
    _, keep = Wanda(0.5, tfs.NM(2, 4)).prune_matrix(ops.convert_to_tensor(W), stats)
    keep = ops.convert_to_numpy(keep).reshape(W.shape[0], -1, 4)
    scores = (np.abs(W) * np.linalg.norm(X.reshape(-1, W.shape[1]), axis=0)).reshape(W.shape[0], -1, 4)
    expected = np.zeros_like(scores)
    np.put_along_axis(expected, np.argsort(-scores, axis=-1, kind="stable")[..., :2], 1, axis=-1)
    np.testing.assert_array_equal(keep, expected)


def test_magnitude_removes_the_smallest_weights_of_the_layer(problem):
    W, _ = problem
    keep = ops.convert_to_numpy(OneShotMagnitude(0.6).prune_kernel(ops.convert_to_tensor(W.T), 0)).T
    assert keep.size - keep.sum() == int(np.floor(0.6 * W.size + 0.5))
    assert np.abs(W[keep == 0]).max() <= np.abs(W[keep == 1]).min()
    block_keep = ops.convert_to_numpy(
        OneShotMagnitude(0.5, tfs.Block((1, 4))).prune_kernel(ops.convert_to_tensor(W.T), 0)
    ).T
    blocks = block_keep.reshape(W.shape[0], -1, 4)
    assert np.all((blocks.sum(-1) == 0) | (blocks.sum(-1) == 4))
    assert blocks.sum(-1).astype(bool).mean() == 0.5


@pytest.mark.parametrize(
    "equation, output_shape, input_shape, kernel_shape",
    [
        ("abc,cde->abde", (None, 3, 4), (2, 5, 8), (8, 3, 4)),  # query projection
        ("abcd,cde->abe", (None, 8), (2, 5, 3, 4), (3, 4, 8)),  # attention output
        ("btd,ndh->btnh", (None, 3, 4), (2, 5, 8), (3, 8, 4)),  # Gemma-style query
        ("...b,bc->...c", 6, (2, 5, 8), (8, 6)),
    ],
)
def test_linear_view_is_the_layer_as_a_matrix(rng, equation, output_shape, input_shape, kernel_shape):
    layer = keras.layers.EinsumDense(equation, output_shape=output_shape)
    layer.build(input_shape)
    layer.kernel.assign(rng.normal(size=kernel_shape).astype("float32"))
    view = LinearView(layer, "layer 'einsum'")
    x = rng.normal(size=input_shape).astype("float32")
    as_matrix = ops.convert_to_numpy(view.input_rows(x)) @ ops.convert_to_numpy(view.matrix(layer.kernel)).T
    # In these equations the output is the tokens, then the kernel's output
    # axes in kernel order: the view's (tokens, rows) layout.
    out = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(as_matrix, out.reshape(as_matrix.shape), rtol=1e-5, atol=1e-5)
    round_trip = ops.convert_to_numpy(view.kernel(view.matrix(layer.kernel)))
    np.testing.assert_array_equal(round_trip, ops.convert_to_numpy(layer.kernel))


def test_einsum_equations_that_are_not_one_linear_map_are_refused():
    layer = keras.layers.EinsumDense("bnd,ndh->bnh", output_shape=(3, 4))
    layer.build((2, 3, 8))
    with pytest.raises(ValueError, match="layer 'per_head'.*bnd,ndh->bnh"):
        LinearView(layer, "layer 'per_head'")


# --- The block-by-block pass on plain Keras models -------------------------


def two_layer_mlp(rng):
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(24, activation="relu", name="fc1")(inputs)
    outputs = keras.layers.Dense(8, name="fc2")(hidden)
    model = keras.Model(inputs, outputs)
    for layer in model.layers[1:]:
        layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return model


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_each_layer_is_pruned_from_the_inputs_of_the_pruned_layers_before_it(rng, method):
    """The second layer's statistics come from the first layer's pruned
    outputs (the reference code's sequential order), checked against the
    same computation done by hand in NumPy."""
    model = two_layer_mlp(rng)
    weights = {layer.name: (ops.convert_to_numpy(layer.kernel), ops.convert_to_numpy(layer.bias)) for layer in model.layers[1:]}
    x = rng.normal(size=(20, 16)).astype("float32")
    tfs.prune_oneshot(model, method, x, sparsity=0.5, blocksize=8, batch_size=5, verbose=0)

    def reference(W, X):
        if method == "wanda":
            return numpy_wanda(W, X, 0.5)[0]
        return numpy_sparsegpt(W, X, num_samples=20, sparsity=0.5, blocksize=8)[0]

    W1 = reference(weights["fc1"][0].T, x)
    hidden = np.maximum(x @ W1.T + weights["fc1"][1], 0.0)
    W2 = reference(weights["fc2"][0].T, hidden)
    got = {path.split("/")[-1]: w for path, w in tfs.sparse_layers(model)}
    np.testing.assert_allclose(ops.convert_to_numpy(got["fc1"].layer.kernel), W1.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(got["fc2"].layer.kernel), W2.T, rtol=1e-3, atol=1e-3)
    for wrapper in got.values():
        (kernel,) = wrapper.kernels
        mask = ops.convert_to_numpy(kernel.state.mask)
        assert mask.mean() == 0.5
        assert np.all(ops.convert_to_numpy(wrapper.layer.kernel)[mask == 0] == 0.0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)), x_through(x, W1, W2, weights), rtol=1e-4, atol=1e-4
    )


def x_through(x, W1, W2, weights):
    hidden = np.maximum(x @ W1.T + weights["fc1"][1], 0.0)
    return hidden @ W2.T + weights["fc2"][1]


class SubclassedMLP(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc1 = keras.layers.Dense(12, activation="relu")
        self.fc2 = keras.layers.Dense(4)

    def call(self, x):
        return self.fc2(self.fc1(x))


def test_subclassed_models_are_calibrated_in_one_pass_and_stay_exact(rng, tmp_path):
    model = SubclassedMLP()
    x = rng.normal(size=(16, 8)).astype("float32")
    model(x)
    tfs.prune_oneshot(model, "sparsegpt", x, sparsity=0.75, blocksize=4, verbose=0)
    report = tfs.sparsity_summary(model, print_fn=None)
    assert report.layers and all(abs(layer.sparsity - 0.75) < 1e-6 for layer in report.layers if layer.kernel)
    stripped = tfs.strip(model)
    np.testing.assert_allclose(ops.convert_to_numpy(stripped(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)


def test_a_pruned_model_keeps_its_pattern_through_fine_tuning(rng):
    model = two_layer_mlp(rng)
    x = rng.normal(size=(32, 16)).astype("float32")
    tfs.prune_oneshot(model, "wanda", x, sparsity=0.5, verbose=0)
    masks = [ops.convert_to_numpy(k.state.mask) for k in tfs.sparse_kernels(model)]
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, rng.normal(size=(32, 8)).astype("float32"), epochs=2, verbose=0, callbacks=[tfs.SparsityCallback()])
    for kernel, mask in zip(tfs.sparse_kernels(model), masks):
        np.testing.assert_array_equal(ops.convert_to_numpy(kernel.state.mask), mask)
        assert np.all(ops.convert_to_numpy(kernel.variable)[mask == 0] == 0.0)


def test_magnitude_needs_no_calibration_data_and_prunes_every_supported_layer(rng):
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(8, 3), keras.layers.Flatten(), keras.layers.Dense(4)])
    tfs.prune_oneshot(model, "magnitude", sparsity=0.5, verbose=0)
    for kernel in tfs.sparse_kernels(model):
        assert ops.convert_to_numpy(kernel.state.mask).mean() == 0.5
    assert len(tfs.sparse_kernels(model)) == 2


# --- Bad input ---------------------------------------------------------------


def test_bad_arguments_name_what_is_wrong(rng):
    x = rng.normal(size=(8, 16)).astype("float32")
    with pytest.raises(ValueError, match="unknown method 'obs'"):
        tfs.prune_oneshot(two_layer_mlp(rng), "obs", x)
    with pytest.raises(ValueError, match="NM\\(1, 4\\).*sparsity 0.75.*sparsity=0.5"):
        tfs.prune_oneshot(two_layer_mlp(rng), "wanda", x, structure=tfs.NM(1, 4))
    with pytest.raises(ValueError, match="method 'sparsegpt' reads the layers' inputs.*calibration_data"):
        tfs.prune_oneshot(two_layer_mlp(rng), "sparsegpt")
    with pytest.raises(ValueError, match="blocksize=6.*multiple of 4.*fc1"):
        tfs.prune_oneshot(two_layer_mlp(rng), "sparsegpt", x, structure=tfs.NM(2, 4), blocksize=6)
    with pytest.raises(ValueError, match="`num_samples` must be >= 1, got 0"):
        tfs.prune_oneshot(two_layer_mlp(rng), "wanda", x, num_samples=0)
    with pytest.raises(ValueError, match="is text, but model .* has no `preprocessor`"):
        tfs.prune_oneshot(two_layer_mlp(rng), "wanda", ["some text", "more text"])
    sparse = tfs.sparsify(two_layer_mlp(rng), tfs.FixedMask())
    with pytest.raises(ValueError, match="already sparse"):
        tfs.prune_oneshot(sparse, "wanda", x)
    with pytest.raises(ValueError, match="`sparsity` must be in \\[0, 1\\) .*got 1.0"):
        tfs.prune_oneshot(two_layer_mlp(rng), "magnitude", sparsity=1.0)


def test_a_layer_the_method_cannot_prune_is_named_and_the_model_left_unchanged(rng):
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(8, 3, name="conv"), keras.layers.Flatten(), keras.layers.Dense(4, name="head")])
    x = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    with pytest.raises(ValueError, match="layer 'conv'.*Conv2D.*method='magnitude'"):
        tfs.prune_oneshot(model, "sparsegpt", x, layers=["conv", "head"], verbose=0)
    assert tfs.sparse_layers(model) == []
    with pytest.warns(UserWarning, match="'conv' \\(Conv2D\\)"):
        tfs.prune_oneshot(model, "sparsegpt", x, verbose=0)  # by default: the Dense layers only
    assert [path.split("/")[-1] for path, _ in tfs.sparse_layers(model)] == ["head"]


def test_layers_the_data_never_reaches_are_named(rng):
    inputs = keras.Input((16,))
    used = keras.layers.Dense(4, name="used")(inputs)
    model = keras.Model(inputs, used)
    model.unused = keras.layers.Dense(4, name="unused")
    model.unused.build((None, 16))
    with pytest.raises(ValueError, match="never reached layer\\(s\\) 'unused'"):
        tfs.prune_oneshot(model, "wanda", rng.normal(size=(8, 16)).astype("float32"), layers=["used", "unused"], verbose=0)


def test_a_keras_hub_causal_lm_keeps_its_class_and_prunes_its_transformer_layers(rng):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=16
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    token_ids = rng.integers(0, 64, size=(8, 16)).astype("int32")
    tfs.prune_oneshot(model, "wanda", token_ids, structure=tfs.NM(2, 4), verbose=0)
    assert type(model) is keras_hub.models.GPT2CausalLM
    paths = [path for path, _ in tfs.sparse_layers(model)]
    assert len(paths) == 12 and all("transformer_layer_" in path for path in paths)
    for kernel in tfs.sparse_kernels(model):
        mask = ops.convert_to_numpy(kernel.state.mask)
        groups = np.moveaxis(mask, kernel.input_axis, -1).reshape(-1, 4).sum(-1)
        assert np.all(groups == 2), kernel.path
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}
    expected = ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(ops.convert_to_numpy(tfs.strip(model)(x)), expected, rtol=1e-5, atol=1e-5)


def test_sparsegpt_prunes_whole_blocks_with_exact_counts_per_lazy_block(problem):
    W, X = problem
    _, view = dense_view(*W.shape)
    stats = statistics_of(view, X, second_moment=True)
    new, keep = SparseGPT(0.5, tfs.Block((2, 4)), blocksize=16).prune_matrix(ops.convert_to_tensor(W), stats)
    keep = ops.convert_to_numpy(keep)
    blocks = keep.reshape(W.shape[0] // 2, 2, W.shape[1] // 4, 4).sum(axis=(1, 3))
    assert set(np.unique(blocks)) <= {0.0, 8.0}
    for start in range(0, W.shape[1] // 4, 4):  # 4 blocks of 4 columns per lazy block
        assert (blocks[:, start : start + 4] == 0).sum() == blocks[:, start : start + 4].size // 2
    assert np.all(ops.convert_to_numpy(new)[keep == 0] == 0.0)


@pytest.mark.tensorflow
def test_calibration_data_may_be_a_dataset_or_strings_through_the_preprocessor(rng):
    import tensorflow as tf

    keras_hub = pytest.importorskip("keras_hub")
    model = two_layer_mlp(rng)
    x = rng.normal(size=(12, 16)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros((12, 8), "float32"))).batch(4)
    expected = two_layer_mlp(np.random.default_rng(0))
    expected.set_weights(model.get_weights())
    tfs.prune_oneshot(model, "wanda", dataset, verbose=0)
    tfs.prune_oneshot(expected, "wanda", x, verbose=0)
    for got, want in zip(tfs.sparse_kernels(model), tfs.sparse_kernels(expected)):
        np.testing.assert_array_equal(ops.convert_to_numpy(got.state.mask), ops.convert_to_numpy(want.state.mask))

    words = ["<|endoftext|>", "Ġ", "th", "the", "Ġt", "Ġth", "Ġthe"] + list("abcdefghijklmnopqrstuvwxyz")
    merges = ["t h", "th e", "Ġ t", "Ġt h", "Ġth e"]
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary={w: i for i, w in enumerate(words)}, merges=merges)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=8)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(words), num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
    )
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    tfs.prune_oneshot(lm, "sparsegpt", ["the cat sat", "a cat", "the sat cat"] * 3, num_samples=6, blocksize=8, verbose=0)
    assert len(tfs.sparse_layers(lm)) == 6
    for kernel in tfs.sparse_kernels(lm):
        assert ops.convert_to_numpy(kernel.state.mask).mean() == 0.5
