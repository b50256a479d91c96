"""Sparse variational dropout (Molchanov, Ashukha & Vetrov, 2017)."""

import dataclasses

import keras
from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity import _backend
from tf_sparsity.methods import base

# Molchanov et al.'s fit of the KL divergence to the log-uniform prior.
K1, K2, K3 = 0.63576, 1.8732, 1.48695
EPSILON = 1e-8


def negative_kl(log_alpha):
    """The Molchanov approximation of -KL(q(w | theta, alpha) || p(w)).

    `k1 * sigmoid(k2 + k3 * log_alpha) - 0.5 * log1p(exp(-log_alpha)) - k1`,
    elementwise; it tends to 0 as alpha grows (the weight is pure noise).
    """
    return K1 * ops.sigmoid(K2 + K3 * log_alpha) - 0.5 * ops.softplus(-log_alpha) - K1


def log_alpha(theta, log_sigma2, clip=None):
    """`log(sigma^2 / theta^2)`, optionally clipped to [-clip, clip]."""
    value = log_sigma2 - ops.log(ops.square(theta) + EPSILON)
    if clip is not None:
        value = ops.clip(value, -clip, clip)
    return value


@dataclasses.dataclass
class VariationalDropoutState(base.PenaltyState):
    """Variational dropout's state of one kernel: the penalty's, plus

    Attributes:
        log_sigma2: the learned log noise variance of every weight.
        threshold: scalar variable, the log-alpha above which inference
            prunes a weight (see `tfs.set_threshold`).
    """

    log_sigma2: object = None
    threshold: object = None


@keras.saving.register_keras_serializable(package=base.PACKAGE)
class VariationalDropout(base.RegularizedMethod):
    """Sparse variational dropout, as the paper's reference code did it.

    Each weight `theta` gets a learned noise variance `sigma^2`
    (`log_sigma2`, initialised to `log_sigma2_init`); `log_alpha = log_sigma2
    - log(theta^2 + 1e-8)` is clipped to `[-clip_alpha, clip_alpha]` in
    training. Training uses the local reparameterization trick: outputs are
    `mean + std * eps` with `mean = x . theta` and `std = sqrt(x^2 . sigma^2
    + 1e-8)` (for Dense and EinsumDense on inputs of rank 3, the noise is
    shared across the sequence axis, as in the reference Transformer;
    convolutions draw it per position); Embedding samples its weights
    (`theta + sigma * eps`). The KL term (Molchanov's approximation, summed
    over weights) times `kl_weight` times the ramp is added to the loss. In
    inference a weight is `theta` where `log_alpha < threshold` and zero
    elsewhere, with no noise; the threshold can be changed after training
    with `set_threshold`.

    Args:
        kl_weight: multiplier of the summed KL (e.g. 1 / N_train, times a
            factor below 1 for less sparsity).
        threshold: log-alpha above which weights are pruned at inference.
        log_sigma2_init: initial `log_sigma2` (-10; the paper's ResNet-50
            runs used -15).
        clip_alpha: `|log_alpha|` limit in training (None: no clipping).
        ramp: a `tfs.Ramp` for the KL weight.
        seed: noise seed.
    """

    name = "variational_dropout"
    weight_name = "kl_weight"
    state_class = VariationalDropoutState
    # `recipe`: 0.1 / N gave ~90% sparsity on small MLPs here.
    default_weight_factor = 0.1

    def __init__(
        self,
        kl_weight,
        threshold=3.0,
        log_sigma2_init=-10.0,
        clip_alpha=8.0,
        ramp=None,
        seed=None,
    ):
        super().__init__(kl_weight, ramp=ramp, seed=seed)
        owner = "VariationalDropout"
        self.threshold = validate.number(owner, "threshold", threshold)
        self.log_sigma2_init = validate.number(owner, "log_sigma2_init", log_sigma2_init)
        self.clip_alpha = (
            None if clip_alpha is None
            else validate.number(owner, "clip_alpha", clip_alpha, above=0)
        )

    @property
    def kl_weight(self):
        return self.weight

    def unsupported_reason(self, layer):
        if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
            return (
                "local reparameterization needs one linear kernel, and "
                "separable convolutions chain two"
            )
        return None

    def build_state(self, kernel):
        state = super().build_state(kernel)
        variable = kernel.variable
        state["log_sigma2"] = kernel.add_weight(
            "log_sigma2",
            shape=variable.shape,
            dtype=variable.dtype,
            initializer=keras.initializers.Constant(self.log_sigma2_init),
            trainable=True,
        )
        state["threshold"] = kernel.add_weight(
            "threshold",
            shape=(),
            initializer=keras.initializers.Constant(self.threshold),
            trainable=False,
            aggregation="only_first_replica",
        )
        return state

    def inference_kernel(self, kernel):
        theta = kernel.variable
        alpha = log_alpha(theta, ops.cast(kernel.state.log_sigma2, theta.dtype))
        keep = ops.less(alpha, ops.cast(kernel.state.threshold, alpha.dtype))
        return ops.multiply(theta, ops.cast(keep, theta.dtype))

    def penalty(self, kernel):
        alpha = log_alpha(
            ops.cast(kernel.variable, "float32"),
            ops.cast(kernel.state.log_sigma2, "float32"),
            self.clip_alpha,
        )
        return -ops.sum(negative_kl(alpha))

    def call(self, wrapper, inputs, training=None, **kwargs):
        if not training:
            return super().call(wrapper, inputs, training=training, **kwargs)
        (kernel,) = wrapper.kernels
        self.add_penalty(kernel)
        state = kernel.state
        theta = kernel.variable
        log_sigma2 = ops.cast(state.log_sigma2, theta.dtype)
        if self.clip_alpha is not None:
            # Clip log_alpha, then recover the variance it implies.
            log_sigma2 = log_alpha(theta, log_sigma2, self.clip_alpha) + ops.log(
                ops.square(theta) + EPSILON
            )
        seed = state.seed_generator
        if isinstance(wrapper.layer, keras.layers.Embedding):
            noise = _backend.random_normal(ops.shape(theta), seed, dtype=theta.dtype)
            sampled = theta + ops.exp(0.5 * log_sigma2) * noise
            return wrapper.call_with_kernels(inputs, {kernel: sampled}, training=training, **kwargs)
        mean = wrapper.call_with_kernels(
            inputs, {kernel: theta}, training=training, linear="activation", **kwargs
        )
        variance = wrapper.call_with_kernels(
            ops.square(inputs), {kernel: ops.exp(log_sigma2)}, training=training, linear="bias", **kwargs
        )
        noise_shape = list(ops.shape(mean))
        if len(inputs.shape) == 3 and isinstance(
            wrapper.layer, (keras.layers.Dense, keras.layers.EinsumDense)
        ):
            noise_shape[1] = 1  # One draw per sequence, shared over positions.
        noise = _backend.random_normal(tuple(noise_shape), seed, dtype=mean.dtype)
        outputs = mean + ops.sqrt(variance + EPSILON) * noise
        activation = getattr(wrapper.layer, "activation", None)
        return activation(outputs) if activation is not None else outputs

    def get_config(self):
        return {
            **super().get_config(),
            "kl_weight": self.weight,
            "threshold": self.threshold,
            "log_sigma2_init": self.log_sigma2_init,
            "clip_alpha": self.clip_alpha,
        }
