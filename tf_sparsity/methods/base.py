"""The interfaces every sparsity method implements.

A method decides three things for each `SparseKernel` of a wrapped layer:
its per-kernel state (`build`, returning a typed state object the method
owns), which kernel the forward pass uses in training and in inference
(`training_kernel`, `inference_kernel`, or a whole custom `call`), and how
that state changes as training goes (`new_update_group`, run by the updater
on the steps `step_schedule` chooses).

Two families share most of that:

- `MaskedMethod`: a 0/1 mask per kernel, moved on a schedule, along the
  method-independent axes `structure` (`Unstructured`, `Block`, `NM`) and
  `scope` (per layer or global), by a drop score and an optional grow score.
  Pruning grows nothing (`PruningMethod`); SET grows at random and RigL by
  gradient (`DynamicSparseMethod`); `FixedMask` never moves.
- `RegularizedMethod`: sparsity learned through a penalty added to the loss
  (variational dropout, L0).
"""

import dataclasses
import zlib

import keras
from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity import masks as mask_ops
from tf_sparsity import schedules as schedules_lib
from tf_sparsity import structures as structures_lib
from tf_sparsity._config import ConfigObject
from tf_sparsity.methods import updates

PACKAGE = "tf_sparsity"
SCOPES = ("layer", "global")


class SparsityMethod(ConfigObject):
    """Base class of sparsity methods.

    Subclasses set `name` (the registry key) and override what they need.
    Every hook takes a `SparseKernel` (`kernel.variable` is the dense
    variable, `kernel.state` what `build` returned).
    """

    name = None

    @property
    def requires_step_updates(self):
        """True when training must drive this method step by step (masks,
        regularizer ramps), through `tfs.SparsityCallback` or
        `tfs.update_masks`."""
        return self.step_schedule is not None

    #: Whether sparsity is learned and can change on every step.
    learned_sparsity = False

    #: What the error for a layer trained with nothing driving its schedule
    #: tells the user to add (an API that wraps this method names its own).
    missing_driver_advice = (
        "Pass `callbacks=[tfs.SparsityCallback()]` to `model.fit`, or call "
        "`tfs.update_masks(model, step)` before each step of a custom "
        "training loop."
    )

    @property
    def step_schedule(self):
        """The `StepSchedule` of the updates the training loop must run."""
        return None

    def new_update_group(self):
        """The `UpdateGroup` that updates this method's kernels on the
        steps `step_schedule` chooses (see `methods/updates.py`)."""
        raise NotImplementedError(
            f"{type(self).__name__} has a step schedule but no update group."
        )

    def unsupported_reason(self, layer):
        """Why this method cannot handle `layer` (a supported type), or None."""
        return None

    @property
    def final_sparsity(self):
        """The target the distribution spreads over layers, or None."""
        return None

    #: Whether the constructor takes a `seed` (the recipe passes the run's).
    uses_seed = False

    @classmethod
    def recipe(
        cls, target_sparsity, total_steps, num_examples=None, seed=None, **overrides
    ):
        """This method with sensible settings for a run of `total_steps`.

        Every method's recipe has this signature; `tfs.make_method` builds a
        method from its name through it.

        Args:
            target_sparsity: the sparsity wanted at the end of training.
            total_steps: the number of training steps of the run.
            num_examples: size of the training set (regularizer weights are
                usually set relative to it).
            seed: the run's seed, used by methods that draw randomness.
            **overrides: the schedule (`begin_step`, `end_step`,
                `frequency`) and constructor arguments that replace the
                defaults.
        """
        raise NotImplementedError(f"{cls.__name__} has no recipe.")

    @classmethod
    def _seeded(cls, overrides, seed):
        if cls.uses_seed and seed is not None:
            overrides.setdefault("seed", seed)
        return overrides

    def build(self, kernel):
        """Creates the per-kernel state of this method.

        Args:
            kernel: the `SparseKernel` being built; `kernel.add_weight`
                creates variables on its wrapper.

        Returns:
            The state object stored as `kernel.state` (None if none).
        """
        return None

    def training_kernel(self, kernel):
        """The kernel tensor the forward pass uses when `training=True`."""
        return self.inference_kernel(kernel)

    def inference_kernel(self, kernel):
        """The (sparse) kernel tensor inference uses; `strip()` folds it in."""
        raise NotImplementedError

    def call(self, wrapper, inputs, training=None, **kwargs):
        """The wrapper's forward pass; by default, swaps in sparse kernels."""
        choose = self.training_kernel if training else self.inference_kernel
        kernels = {kernel: choose(kernel) for kernel in wrapper.kernels}
        return wrapper.call_with_kernels(inputs, kernels, training=training, **kwargs)

    def get_config(self):
        return {}


@dataclasses.dataclass
class MaskState:
    """A masked method's state of one kernel.

    Attributes:
        mask: the 0/1 mask variable (dtype of the kernel).
        gradient: for methods that read gradients (`needs_gradient`), a
            kernel-shaped variable holding the loss's gradient with respect
            to the effective kernel at the last training step; else None.
    """

    mask: object
    gradient: object = None


class MaskedMethod(SparsityMethod):
    """A method that keeps a 0/1 mask per kernel and moves it on a schedule.

    The forward pass computes with `kernel * mask`, so masked weights get a
    zero gradient and stay exactly zero in the effective kernel. Masks start
    at ones; `tfs.save_masks`/`tfs.load_masks` move them between models.

    Every masked method has the same axes: a `schedule` (when updates
    happen, and how much is masked), a `structure` (which weights are masked
    together), a `scope` (each kernel on its own, or one ranking over all),
    a drop score (`drop_scores`: the lowest active units are removed) and an
    optional grow score (`grow_scores`: the highest inactive units are
    added; None grows nothing).

    Gradients are a capability of the base: a method that sets
    `needs_gradient = True` gets, for every kernel, the dense gradient of
    the loss with respect to the effective kernel (masked positions
    included) at each training step, with no second backward pass, through
    `gradient(kernel)`. A zero-valued variable is added to the forward pass
    as `g - stop_gradient(g)` (no change in value) and marked
    `overwrite_with_gradient`, so the optimizer stores the step's gradient
    in it instead of updating it. Under `tf.distribute` it is averaged over
    replicas. It costs one kernel-sized variable and, on several devices,
    one more kernel-sized all-reduce per step. Under a `LossScaleOptimizer`
    it holds the loss-scaled gradient (Keras unscales only the gradients it
    applies), which ranks the weights of a kernel the same way.

    Args:
        schedule: a `SparsitySchedule`, or None for masks that never change.
        structure: `tfs.Unstructured()` (default), `tfs.Block((rows, cols))`
            or `tfs.NM(n, m)` (see `tf_sparsity/structures.py`); counts and
            targets are then in blocks (N:M: weights, n kept per group).
        scope: "layer": each kernel to its own target; "global": one
            ranking over all of the method's kernels.
    """

    @property
    def needs_gradient(self):
        """Whether `gradient(kernel)` is needed (see the class docstring): a
        method class sets it to True, or its structure asks for it (Taylor
        scores of `tfs.Units(score="taylor")`)."""
        return self.structure.needs_gradient

    #: Whether masked weights may be held at exactly zero in the variable
    #: while training (`keep_masked_zeros`); False for methods whose masked
    #: weights keep training (magnitude pruning with regrowth).
    can_keep_masked_zeros = True

    def __init__(self, schedule=None, structure=None, scope="layer"):
        owner = type(self).__name__
        self.schedule = None if schedule is None else schedules_lib.get(schedule)
        self.scope = validate.choice(owner, "scope", scope, SCOPES)
        self.structure = structures_lib.get(structure)
        if self.scope == "global" and not self.structure.supports_global_scope:
            raise ValueError(
                f"{owner}: {self.structure!r} fixes each kernel's sparsity, so "
                'scope="global" (one ranking over all kernels) does not apply.'
            )
        if self.structure.coupled_kind is not None and not isinstance(self, PruningMethod):
            raise ValueError(
                f"{owner}: {self.structure!r} removes whole units across layers, "
                "which only pruning methods do (tfs.MagnitudePruning, "
                "tfs.RandomPruning); units do not move in dynamic sparse training."
            )
        fixed = self.structure.fixed_sparsity
        if (
            fixed is not None
            and self.schedule is not None
            and abs(self.schedule.final_sparsity - fixed) > 1e-6
        ):
            raise ValueError(
                f"{owner}: {self.structure!r} fixes every kernel at sparsity "
                f"{fixed:g}, but the target is {self.schedule.final_sparsity:g}; "
                f"use {fixed:g}."
            )

    @property
    def final_sparsity(self):
        return None if self.schedule is None else self.schedule.final_sparsity

    @property
    def step_schedule(self):
        return self.schedule

    def build(self, kernel):
        self.structure.check(
            f"layer '{kernel.layer.name}' ({kernel.name})",
            kernel.shape,
            kernel.input_axis,
            kernel.target if kernel.target is not None else self.final_sparsity,
        )
        variable = kernel.variable
        mask = kernel.add_weight(
            "mask",
            shape=variable.shape,
            dtype=variable.dtype,
            initializer="ones",
            trainable=False,
            # Masks are written outside the replicas' step; if user code ever
            # assigns one inside it, the first replica's value wins everywhere.
            aggregation="only_first_replica",
        )
        gradient = None
        if self.needs_gradient:
            gradient = kernel.add_weight(
                "dense_grad",
                shape=variable.shape,
                dtype=variable.dtype,
                initializer="zeros",
                trainable=True,
                aggregation="mean",
            )
            gradient.overwrite_with_gradient = True
        return MaskState(mask=mask, gradient=gradient)

    def inference_kernel(self, kernel):
        variable = kernel.variable
        return ops.multiply(variable, ops.cast(kernel.state.mask, variable.dtype))

    def training_kernel(self, kernel):
        if kernel.wrapper.masked_zeros_kept:
            # The variable is zero wherever the mask is (see
            # `keep_masked_zeros`), so `kernel * mask` is the kernel itself:
            # only the gradient needs the mask. Same values, one pass fewer.
            variable = kernel.variable
            value = ops.cast(variable, variable.dtype)
            probe = kernel.state.gradient
            return mask_ops.masked_gradient(
                value,
                ops.cast(kernel.state.mask, value.dtype),
                None if probe is None else ops.convert_to_tensor(probe),
            )
        sparse = self.inference_kernel(kernel)
        if kernel.state.gradient is None:
            return sparse
        probe = ops.convert_to_tensor(kernel.state.gradient)
        # Zero in value; its gradient is the loss's gradient w.r.t. the
        # effective kernel at every position.
        return sparse + ops.cast(probe - ops.stop_gradient(probe), sparse.dtype)

    def keep_masked_zeros(self, kernel, slots=()):
        """Zeroes the kernel's variable and its optimizer `slots` wherever
        its mask is 0.

        While the optimizer keeps zero weights at zero (elementwise updates
        of a zero gradient and zero slots: `optimizer_state.keeps_zeros`),
        the variable then equals `kernel * mask` and the training forward
        pass can skip the multiply (`SparseWrapper.masked_zeros_kept`, set
        by the updater). Masked weights never count (the forward pass masks
        them and pruned weights rank below live ones), so zeroing them
        changes no output. Mask updates call it inside their one traced
        assign (`UpdateGroup.assign_in_one_call`): `keras.ops` and variable
        assigns only.
        """
        mask = kernel.state.mask
        for variable in (kernel.variable, *slots):
            variable.assign(ops.multiply(variable, ops.cast(mask, variable.dtype)))

    def gradient(self, kernel):
        """The dense gradient recorded at the last training step (needs
        `needs_gradient = True`)."""
        if kernel.state.gradient is None:
            raise ValueError(
                f"{type(self).__name__} does not record gradients; set "
                "`needs_gradient = True` on the method class to read them."
            )
        return ops.convert_to_tensor(kernel.state.gradient)

    def drop_scores(self, kernel, mask, seed):
        """Per-weight scores: the lowest active weights are dropped first.

        Magnitude by default. Runs inside the compiled mask update.

        Args:
            kernel: the raw kernel values, float32.
            mask: its current 0/1 mask, float32.
            seed: the kernel's stable int seed (`SparseKernel.seed`), for
                methods that draw randomness.
        """
        return ops.abs(kernel)

    def grow_scores(self, kernel, step):
        """Per-weight scores of the update at `step`: the highest inactive
        weights are grown. None (the default): nothing grows.

        Args:
            kernel: the `SparseKernel`.
            step: the training step of the update.
        """
        return None

    def check_optimizer(self, optimizer):
        """Raises if the model's optimizer (None before compiling) cannot
        train this method correctly; checked before every update."""
        if self.needs_gradient and getattr(optimizer, "gradient_accumulation_steps", None):
            raise ValueError(
                f"{type(self).__name__} cannot read the dense gradient with "
                f"optimizer '{optimizer.name}' (gradient_accumulation_steps="
                f"{optimizer.gradient_accumulation_steps}): Keras then stores "
                "an elementwise running maximum in `overwrite_with_gradient` "
                "variables instead of the gradient. Train without gradient "
                "accumulation."
            )

    def axes_config(self):
        """The config entries of the shared axes that differ from their
        defaults (structure, scope)."""
        config = {}
        if not isinstance(self.structure, structures_lib.Unstructured):
            config["structure"] = keras.saving.serialize_keras_object(self.structure)
        if self.scope != "layer":
            config["scope"] = self.scope
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "schedule" in config:
            config["schedule"] = schedules_lib.get(config["schedule"])
        if "structure" in config:
            config["structure"] = structures_lib.get(config["structure"])
        return cls(**config)

    def get_config(self):
        return self.axes_config()


class PruningMethod(MaskedMethod):
    """A masked method whose masks only lose weights, on a schedule.

    At each update the lowest-scoring weights (`drop_scores`) are pruned
    until the schedule's sparsity is reached; nothing grows back.

    Args:
        schedule: a `SparsitySchedule` (e.g. `tfs.PolynomialDecay`).
        scope: "layer" prunes each kernel to its own target; "global" ranks
            all sparsified kernels together and prunes the same total number
            of weights wherever the scores are lowest.
        structure: which weights are pruned together: `tfs.Unstructured()`
            (default), `tfs.Block((rows, cols))`, `tfs.NM(n, m)`, or whole
            units across layers: `tfs.Units()`, `tfs.Heads()`.
    """

    #: Whether pruned weights always rank below live ones (permanent masks).
    permanent_masks = True

    def __init__(self, schedule, scope="layer", structure=None):
        super().__init__(schedule, structure=structure, scope=scope)

    def new_update_group(self):
        if self.structure.coupled_kind is not None:
            return updates.UnitMaskUpdate(self)
        return updates.MaskUpdate(self)

    @classmethod
    def recipe(
        cls, target_sparsity, total_steps, num_examples=None, seed=None, **overrides
    ):
        """Zhu & Gupta's schedule placed as in the paper's ResNet-50 runs.

        Pruning starts at 31% of training (step 40k of 128k), ends at 78%
        (100k) and updates masks 30 times in between (every 2k steps),
        unless `begin_step`, `end_step` or `frequency` are overridden.
        """
        begin = overrides.pop("begin_step", int(0.3125 * total_steps))
        end = overrides.pop("end_step", max(int(0.78125 * total_steps), begin + 1))
        frequency = overrides.pop("frequency", max((end - begin) // 30, 1))
        schedule = schedules_lib.PolynomialDecay(
            initial_sparsity=overrides.pop("initial_sparsity", 0.0),
            final_sparsity=target_sparsity,
            begin_step=begin,
            end_step=end,
            frequency=frequency,
        )
        return cls(schedule, **cls._seeded(overrides, seed))

    def compute_masks(self, kernels, masks, counts, seeds, input_axes):
        """New masks for a group of kernels (pure; compiled with XLA).

        Args:
            kernels: list of kernel tensors.
            masks: list of their current masks.
            counts: int32 tensor, units (weights, or blocks) to prune in each
                kernel.
            seeds: list of Python ints, one per kernel.
            input_axes: list of each kernel's input axis (or None).

        Returns:
            List of new masks, dtype of the current masks.
        """
        structure = self.structure
        scores = []
        for kernel, mask, seed, axis in zip(kernels, masks, seeds, input_axes):
            mask = ops.cast(mask, "float32")
            weight_scores = self.drop_scores(ops.cast(kernel, "float32"), mask, seed)
            if self.permanent_masks:
                weight_scores = pruned_first(weight_scores, mask)
            scores.append(structure.unit_scores(weight_scores, axis))
        if self.scope == "global":
            kept = mask_ops.prune_lowest_jointly(scores, ops.sum(counts))
        else:
            kept = [mask_ops.prune_lowest(s, counts[i]) for i, s in enumerate(scores)]
        return [
            ops.cast(structure.expand(unit_mask, m.shape, axis), m.dtype)
            for unit_mask, m, axis in zip(kept, masks, input_axes)
        ]

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scope": self.scope,
            **{k: v for k, v in self.axes_config().items() if k != "scope"},
        }


def pruned_first(scores, mask):
    """Scores where already-pruned weights rank below every live one.

    Keeps masks permanent: a gradual schedule never lowers sparsity, so the
    weights pruned before are always among those pruned again.
    """
    return ops.where(ops.greater(mask, 0.5), scores, -1.0)


@dataclasses.dataclass
class PenaltyState:
    """A regularized method's state of one kernel.

    Attributes:
        penalty_scale: scalar variable, the ramp's current value.
        seed_generator: the kernel's noise `SeedGenerator`.
    """

    penalty_scale: object
    seed_generator: object


class RegularizedMethod(SparsityMethod):
    """A method that learns sparsity through a penalty added to the loss.

    The penalty (a KL divergence, an expected L0 norm) is summed over the
    kernel's weights, multiplied by `weight` and by a ramp that goes from 0 to
    1 over a window of steps, and added to the loss with `add_loss` in
    training. Noise is drawn from a per-kernel seed generator.

    Args:
        weight: the penalty's multiplier (e.g. 1 / number of training
            examples, times a factor: the main knob for sparsity).
        ramp: a `tfs.Ramp` (default: no ramp, full weight from the start).
        seed: int seed of the noise; None picks one (recorded in the config).
    """

    weight_name = "weight"
    uses_seed = True
    # `recipe`'s default weight is `default_weight_factor / num_examples`,
    # and `recipe_defaults` are further constructor defaults.
    default_weight_factor = 1.0
    recipe_defaults = {}
    #: The state class `build` fills (subclasses extend `PenaltyState`).
    state_class = PenaltyState

    def __init__(self, weight, ramp=None, seed=None):
        owner = type(self).__name__
        self.weight = validate.number(owner, self.weight_name, weight, minimum=0)
        if ramp is not None and not isinstance(ramp, (schedules_lib.Ramp, dict)):
            raise TypeError(
                f"{owner}: `ramp` must be a tfs.Ramp(begin_step, end_step), got "
                f"{ramp!r}."
            )
        self.ramp = schedules_lib.get(ramp) if ramp is not None else schedules_lib.Ramp()
        self.seed = validate.seed_or_draw(owner, seed)

    learned_sparsity = True

    @property
    def step_schedule(self):
        return self.ramp if self.ramp.active else None

    def new_update_group(self):
        return updates.RampUpdate(self)

    @classmethod
    def recipe(
        cls, target_sparsity, total_steps, num_examples=None, seed=None, **overrides
    ):
        """The penalty ramped in linearly over the first 40% of training.

        The weight is the knob (there is no direct target; `target_sparsity`
        is recorded only): pass it by name, or `num_examples` to get
        `default_weight_factor / num_examples`. `begin_step` and `end_step`
        place the ramp (the reference code's `sparsity_begin_step` and
        `sparsity_end_step`) and `ramp_shape` its shape ("linear" or
        "cubic", see `tfs.Ramp`); `frequency` does not apply.
        """
        owner = cls.__name__
        if "frequency" in overrides:
            raise ValueError(
                f"{owner}: `frequency` is for pruning methods; this method "
                "ramps its penalty from begin_step to end_step"
            )
        begin, end = overrides.pop("begin_step", None), overrides.pop("end_step", None)
        if (begin is None) != (end is None):
            raise ValueError(
                f"{owner} ramps its penalty from begin_step to end_step: give "
                "both, or neither"
            )
        if begin is None:
            begin, end = 0, max(int(0.4 * total_steps), 1)
        shape = overrides.pop("ramp_shape", "linear")
        overrides.setdefault("ramp", schedules_lib.Ramp(begin, end, shape=shape))
        if cls.weight_name not in overrides:
            if num_examples is None:
                raise ValueError(
                    f"{owner} needs `{cls.weight_name}` (e.g. 1 / number of "
                    "training examples) or `num_examples`."
                )
            overrides[cls.weight_name] = cls.default_weight_factor / num_examples
        for name, value in cls.recipe_defaults.items():
            overrides.setdefault(name, value)
        return cls(**cls._seeded(overrides, seed))

    def build(self, kernel):
        return self.state_class(**self.build_state(kernel))

    def build_state(self, kernel):
        """The fields of this method's state for `kernel` (a dict;
        subclasses add theirs to `super().build_state(kernel)`)."""
        scale = kernel.add_weight(
            "penalty_scale",
            shape=(),
            initializer=keras.initializers.Constant(self.ramp.value(0)),
            trainable=False,
            aggregation="only_first_replica",
        )
        # Seeded per kernel path, so that each kernel's noise is independent.
        generator = kernel.add_seed_generator(self.kernel_seed(kernel))
        return {"penalty_scale": scale, "seed_generator": generator}

    def kernel_seed(self, kernel):
        """A seed for this kernel, from `seed` and the kernel's variable path."""
        return (self.seed + zlib.crc32(kernel.variable.path.encode())) % (2**31 - 1)

    def penalty(self, kernel):
        """The penalty of one kernel before `weight` (a float32 scalar)."""
        raise NotImplementedError

    def extra_penalty(self, kernel):
        """Terms with their own weights (e.g. weight decay), or None."""
        return None

    def add_penalty(self, kernel):
        total = self.weight * ops.cast(self.penalty(kernel), "float32")
        extra = self.extra_penalty(kernel)
        if extra is not None:
            total = total + extra
        kernel.wrapper.add_loss(ops.cast(kernel.state.penalty_scale, "float32") * total)

    def call(self, wrapper, inputs, training=None, **kwargs):
        if training:
            for kernel in wrapper.kernels:
                self.add_penalty(kernel)
        return super().call(wrapper, inputs, training=training, **kwargs)

    def get_config(self):
        return {
            "ramp": keras.saving.serialize_keras_object(self.ramp),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["ramp"] = schedules_lib.get(config["ramp"])
        return cls(**config)
