"""Variational dropout and L0 regularization."""

import math

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import tf_sparsity as tfs
from tf_sparsity.methods import l0 as l0_lib
from tf_sparsity.methods import variational_dropout as vd_lib
from tests import models

pytestmark = pytest.mark.core


def vd(**kwargs):
    kwargs.setdefault("seed", 3)
    return tfs.VariationalDropout(kwargs.pop("kl_weight", 1e-3), **kwargs)


def l0(**kwargs):
    kwargs.setdefault("seed", 3)
    return tfs.L0Regularization(kwargs.pop("l0_weight", 1e-3), **kwargs)


def reference_negative_kl(log_alpha):
    """0.5 log(alpha) - E_{eps ~ N(1, alpha)} log|eps| (Molchanov eq. 8), by quadrature."""
    from scipy import integrate, stats

    alpha = math.exp(log_alpha)
    std = math.sqrt(alpha)
    f = lambda z: math.log(abs(1.0 + std * z)) * stats.norm.pdf(z)
    singular = -1.0 / std
    left, _ = integrate.quad(f, -np.inf, singular, limit=200)
    right, _ = integrate.quad(f, singular, np.inf, limit=200)
    return 0.5 * log_alpha - (left + right)


def test_kl_approximation_matches_numerical_reference():
    # The approximation equals the exact value up to a constant C.
    values = [-4.0, -2.0, 0.0, 2.0, 4.0]
    approx = ops.convert_to_numpy(vd_lib.negative_kl(np.array(values, "float32")))
    exact = np.array([reference_negative_kl(v) for v in values])
    offsets = approx - exact
    np.testing.assert_allclose(offsets, offsets.mean(), atol=0.015)
    # -KL -> 0 for large alpha (pure noise: the prior).
    assert float(ops.convert_to_numpy(vd_lib.negative_kl(np.float32(20.0)))) == pytest.approx(0.0, abs=1e-3)
    assert float(ops.convert_to_numpy(vd_lib.negative_kl(np.float32(-8.0)))) < -4.0


@pytest.mark.parametrize("make, extra", [(vd, "log_sigma2"), (l0, "log_alpha")])
def test_gradients_reach_theta_and_noise_parameters(make, extra, rng):
    x = rng.normal(size=(32, 8)).astype("float32")
    y = rng.normal(size=(32, 4)).astype("float32")
    sparse = tfs.sparsify(models.sequential(), make())
    sparse.compile(keras.optimizers.SGD(0.1), "mse")
    wrapper = sparse.get_layer("hidden")
    state = wrapper.kernels[0].state
    before = {name: ops.convert_to_numpy(v).copy() for name, v in [("theta", wrapper.layer._kernel), (extra, getattr(state, extra))]}
    sparse.train_on_batch(x, y)
    assert np.abs(ops.convert_to_numpy(wrapper.layer._kernel) - before["theta"]).max() > 0
    assert np.abs(ops.convert_to_numpy(getattr(state, extra)) - before[extra]).max() > 0
    assert getattr(state, extra).trainable


def test_penalty_is_added_to_the_loss_with_weight_and_ramp(rng):
    x = rng.normal(size=(16, 8)).astype("float32")
    sparse = tfs.sparsify(models.sequential(), vd(kl_weight=0.5))
    sparse(x, training=True)
    manual = 0.0
    for _, w in tfs.sparse_layers(sparse):
        state = w.kernels[0].state
        alpha = vd_lib.log_alpha(ops.convert_to_numpy(w.layer._kernel), ops.convert_to_numpy(state.log_sigma2), 8.0)
        manual += -float(ops.convert_to_numpy(ops.sum(vd_lib.negative_kl(alpha))))
    assert float(sum(ops.convert_to_numpy(l) for l in sparse.losses)) == pytest.approx(0.5 * manual, rel=1e-5)


def test_ramp_scales_the_penalty_through_the_callback(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")
    method = l0(ramp=tfs.Ramp(2, 10, shape="cubic", updates=8))
    sparse = tfs.sparsify(models.sequential(), method)
    sparse.compile("adam", "mse")
    scale = sparse.get_layer("hidden").kernels[0].state.penalty_scale
    assert float(ops.convert_to_numpy(scale)) == 0.0
    with pytest.raises(Exception, match="SparsityCallback"):
        sparse.fit(x, y, batch_size=16, epochs=1, verbose=0)
    sparse = tfs.sparsify(models.sequential(), method)
    sparse.compile("adam", "mse")
    sparse.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfs.SparsityCallback()])
    scale = sparse.get_layer("hidden").kernels[0].state.penalty_scale
    assert float(ops.convert_to_numpy(scale)) == pytest.approx(1 - (1 - 1 / 8) ** 3)  # step 3
    sparse.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[tfs.SparsityCallback()])
    assert float(ops.convert_to_numpy(scale)) == 1.0


def test_vd_inference_uses_the_threshold_and_set_threshold_reevaluates(rng):
    x = rng.normal(size=(16, 8)).astype("float32")
    sparse = tfs.sparsify(models.sequential(), vd(threshold=3.0))
    wrapper = sparse.get_layer("hidden")
    state = wrapper.kernels[0].state
    theta = ops.convert_to_numpy(wrapper.layer._kernel)
    log_sigma2 = np.log(theta**2 + 1e-8) + rng.uniform(-4, 6, size=theta.shape).astype("float32")
    state.log_sigma2.assign(log_sigma2)
    alpha = log_sigma2 - np.log(theta**2 + 1e-8)
    expected = np.where(alpha < 3.0, theta, 0.0)
    np.testing.assert_allclose(ops.convert_to_numpy(wrapper.inference_kernels()["kernel"]), expected, rtol=1e-6)
    out1 = ops.convert_to_numpy(sparse(x))
    np.testing.assert_array_equal(out1, ops.convert_to_numpy(sparse(x)))  # no noise
    sparsity_at_3 = tfs.sparsity_summary(sparse, print_fn=None).layers[0].sparsity
    assert tfs.set_threshold(sparse, 0.5) == 3.0
    sparsity_at_half = tfs.sparsity_summary(sparse, print_fn=None).layers[0].sparsity
    assert sparsity_at_half > sparsity_at_3
    assert sparsity_at_half == pytest.approx(float((alpha >= 0.5).mean()), abs=1e-6)
    rows = tfs.sweep_threshold(sparse, lambda m: 0.0, thresholds=(0.0, 2.0, 5.0))
    assert [r.setting for r in rows] == [0.0, 2.0, 5.0]
    assert rows[0].global_sparsity > rows[1].global_sparsity > rows[2].global_sparsity
    assert tfs.set_threshold(sparse, 3.0) == 0.5  # sweep restored it


def test_vd_training_is_noisy_and_uses_local_reparameterization(rng):
    x = rng.normal(size=(256, 8)).astype("float32")
    method = vd(log_sigma2_init=0.0, clip_alpha=None)
    sparse = tfs.sparsify(models.sequential(), method, layers=["logits"])
    # Pre-activation statistics: mean x.theta + b, variance x^2 . sigma^2.
    wrapper = sparse.get_layer("logits")
    hidden = ops.convert_to_numpy(sparse.get_layer("bn")(sparse.get_layer("hidden")(x)))
    draws = np.stack([ops.convert_to_numpy(wrapper(hidden, training=True)) for _ in range(200)])
    theta = ops.convert_to_numpy(wrapper.layer._kernel)
    bias = ops.convert_to_numpy(wrapper.layer.bias)
    mean = hidden @ theta + bias
    std = np.sqrt((hidden**2) @ np.ones_like(theta) + 1e-8)  # sigma^2 = exp(0) = 1
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * std.max() / math.sqrt(200))
    np.testing.assert_allclose(draws.std(0) / std, 1.0, atol=0.25)


def test_l0_gates_follow_the_hard_concrete_formulas():
    log_alpha = np.array([-6.0, -2.0, 0.0, 2.197, 6.0], "float32")
    gates = ops.convert_to_numpy(l0_lib.deterministic_gates(log_alpha))
    expected = np.clip(1 / (1 + np.exp(-log_alpha)) * 1.2 - 0.1, 0, 1)
    np.testing.assert_allclose(gates, expected, rtol=1e-6)
    assert gates[0] == 0.0 and gates[-1] == 1.0
    p = ops.convert_to_numpy(l0_lib.expected_nonzero(log_alpha))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(log_alpha - 2 / 3 * np.log(0.1 / 1.1)))), rtol=1e-5)
    samples = ops.convert_to_numpy(l0_lib.sample_gates(np.full((20000,), 0.0, "float32"), seed=1))
    assert samples.min() == 0.0 and samples.max() == 1.0
    # P(z > 0) for log_alpha = 0 equals expected_nonzero(0).
    assert (samples > 0).mean() == pytest.approx(float(ops.convert_to_numpy(l0_lib.expected_nonzero(np.float32(0.0)))), abs=0.02)


def test_l0_initialisation_and_inference(rng):
    sparse = tfs.sparsify(models.sequential(), l0(gate_lr_multiplier=4.0))
    wrapper = sparse.get_layer("hidden")
    log_alpha = ops.convert_to_numpy(wrapper.method.log_alpha(wrapper.kernels[0]))
    assert log_alpha.mean() == pytest.approx(2.197, abs=0.01)
    assert log_alpha.std() == pytest.approx(0.01, rel=0.3)
    theta = ops.convert_to_numpy(wrapper.layer._kernel)
    expected = theta * np.clip(1 / (1 + np.exp(-log_alpha)) * 1.2 - 0.1, 0, 1)
    np.testing.assert_allclose(ops.convert_to_numpy(wrapper.inference_kernels()["kernel"]), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [vd, l0])
def test_seeds_make_runs_reproducible(make, rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")

    def run():
        keras.utils.set_random_seed(11)
        sparse = tfs.sparsify(models.sequential(), make())
        sparse.compile(keras.optimizers.Adam(1e-2), "mse")
        sparse.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        return [ops.convert_to_numpy(v) for v in sparse.weights]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [vd, l0])
def test_no_nan_with_a_high_learning_rate(make, rng):
    x = rng.normal(size=(256, 8)).astype("float32") * 10
    y = rng.integers(0, 4, size=256)
    sparse = tfs.sparsify(models.sequential(), make(**({"kl_weight": 1.0} if make is vd else {"l0_weight": 1.0})))
    sparse.compile(keras.optimizers.SGD(1.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = sparse.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    for v in sparse.weights:
        assert np.all(np.isfinite(ops.convert_to_numpy(v))), v.path


@pytest.mark.parametrize("make", [vd, l0])
def test_strip_save_and_summary_use_inference_weights(make, rng, tmp_path):
    x = rng.normal(size=(16, 5, 6)).astype("float32")
    y = rng.normal(size=(16, 5, 2)).astype("float32")
    sparse = tfs.sparsify(models.subclassed(), make())
    sparse.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=True)
    sparse.fit(x, y, epochs=2, batch_size=8, verbose=0)
    expected = ops.convert_to_numpy(sparse(x))
    plain = tfs.strip(sparse)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(x)), expected, rtol=1e-5, atol=1e-6)
    assert not [v.path for v in plain.weights if "log_" in v.path or "scale" in v.path]
    assert tfs.sparsity_summary(plain, print_fn=None).nonzero == tfs.sparsity_summary(sparse, print_fn=None).nonzero
    tfs.save(sparse, tmp_path / "m.keras")
    restored = tfs.load(tmp_path / "m.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(restored(x)), expected, rtol=1e-6, atol=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="threshold"):
        tfs.VariationalDropout(1e-3, threshold=float("inf"))
    with pytest.raises(ValueError, match="kl_weight` must be >= 0"):
        tfs.VariationalDropout(-1.0)
    with pytest.raises(ValueError, match="l0_weight` must be >= 0"):
        tfs.L0Regularization(-0.1)
    with pytest.raises(ValueError, match="end_step"):
        tfs.Ramp(100, 50)
    model = keras.Sequential([keras.Input((8, 8, 3)), layers.SeparableConv2D(4, 3, name="sep")])
    with pytest.raises(ValueError, match="'sep'.*VariationalDropout"):
        tfs.sparsify(model, vd())
    with pytest.raises(ValueError, match="ERK needs a method with a sparsity schedule"):
        tfs.sparsify(models.sequential(), vd(), distribution=tfs.ERK())


def test_choose_picks_the_best_setting_reaching_the_target():
    rows = [tfs.tuning.SweepRow(0.1, 0.70, 0.95), tfs.tuning.SweepRow(0.3, 0.91, 0.93), tfs.tuning.SweepRow(1.0, 0.97, 0.90)]
    assert tfs.choose(rows, 0.9).setting == 0.3
    with pytest.raises(ValueError, match="0.97"):
        tfs.choose(rows, 0.99)


@keras.saving.register_keras_serializable(package="tf_sparsity_tests")
class NoTrainingArg(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(4, name="dense")

    def call(self, x):
        return self.dense(x)


def test_regularized_methods_need_training_to_reach_the_layer():
    model = NoTrainingArg()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="'dense'.*NoTrainingArg.*training=None"):
        tfs.sparsify(model, vd())
    # Pruning does not depend on the training flag.
    tfs.sparsify(model, tfs.MagnitudePruning(tfs.OneShot(0.5)))


def test_vd_noise_is_shared_across_sequence_positions_for_dense_layers():
    x = np.repeat(np.random.default_rng(0).normal(size=(4, 1, 6)).astype("float32"), 5, axis=1)
    for layer, shared in ((layers.EinsumDense("btd,de->bte", (None, 3)), True), (layers.Conv1D(3, 1), False)):
        layer(x)
        wrapper = tfs.SparseWrapper(layer, vd(log_sigma2_init=0.0))
        out = ops.convert_to_numpy(wrapper(x, training=True))
        same = np.allclose(out[:, :1], out, atol=1e-6)
        assert same == shared, type(layer).__name__
