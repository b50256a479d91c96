"""The interface every sparsity method implements.

A method decides three things for each kernel of a wrapped layer: which extra
variables it needs (`build`), which kernel the forward pass uses in training
and in inference (`training_kernel`, `inference_kernel`, or a whole custom
`call`), and, for pruning methods, how masks are recomputed as training goes
(`compute_masks`, run by the mask updater on the steps the schedule chooses).
"""

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


class SparsityMethod(ConfigObject):
    """Base class of sparsity methods.

    Subclasses set `name` (the registry key) and override what they need.
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

    def build(self, wrapper, attribute, kernel):
        """Creates the per-kernel variables of this method on `wrapper`.

        Args:
            wrapper: the `SparseWrapper` being built.
            attribute: the kernel's attribute name on the wrapped layer.
            kernel: the kernel variable.

        Returns:
            A dict of the variables created, stored by the wrapper.
        """
        return {}

    def training_kernel(self, wrapper, attribute, kernel):
        """The kernel the forward pass uses when `training=True`."""
        return self.inference_kernel(wrapper, attribute, kernel)

    def inference_kernel(self, wrapper, attribute, kernel):
        """The (sparse) kernel inference uses; `strip()` folds this in."""
        raise NotImplementedError

    def call(self, wrapper, inputs, training=None, **kwargs):
        """The wrapper's forward pass; by default, swaps in sparse kernels."""
        choose = self.training_kernel if training else self.inference_kernel
        kernels = {
            attribute: choose(wrapper, attribute, wrapper.dense_kernel(attribute))
            for attribute in wrapper.kernel_attributes
        }
        return wrapper.call_with_kernels(inputs, kernels, training=training, **kwargs)

    def get_config(self):
        return {}


class MaskedMethod(SparsityMethod):
    """A method that keeps a 0/1 mask per kernel (`kernel_mask`, ...): the
    forward pass computes with `kernel * mask`, so pruned weights get a zero
    gradient and stay exactly zero in the effective kernel. Masks start at
    ones; `tfs.save_masks`/`tfs.load_masks` move them between models."""

    def build(self, wrapper, attribute, kernel):
        mask = wrapper.add_weight(
            name=f"{attribute.lstrip('_')}_mask",
            shape=kernel.shape,
            dtype=kernel.dtype,
            initializer="ones",
            trainable=False,
            # Masks are written outside the replicas' step; if user code ever
            # assigns one inside it, the first replica's value wins everywhere.
            aggregation="only_first_replica",
        )
        return {"mask": mask}

    def mask(self, wrapper, attribute):
        return wrapper.sparsity_variables[attribute]["mask"]

    def inference_kernel(self, wrapper, attribute, kernel):
        mask = self.mask(wrapper, attribute)
        return ops.multiply(kernel, ops.cast(mask, kernel.dtype))



class PruningMethod(MaskedMethod):
    """A method that keeps a 0/1 mask per kernel, recomputed on a schedule.

    The forward pass computes with `kernel * mask`, so pruned weights get a
    zero gradient and stay exactly zero in the effective kernel. Subclasses
    define `scores`: at each update the lowest-scoring weights are pruned.

    Args:
        schedule: a `SparsitySchedule` (e.g. `tfs.PolynomialDecay`).
        scope: "layer" prunes each kernel to its own target; "global" ranks
            all sparsified kernels together and prunes the same total number
            of weights wherever the scores are lowest.
        structure: which weights are pruned together: `tfs.Unstructured()`
            (default), `tfs.Block((rows, cols))` or `tfs.NM(n, m)` (see
            `tf_sparsity/structures.py`); counts and targets are then in
            blocks.
    """

    def __init__(self, schedule, scope="layer", structure=None):
        owner = type(self).__name__
        self.schedule = schedules_lib.get(schedule)
        self.scope = validate.choice(owner, "scope", scope, ("layer", "global"))
        self.structure = structures_lib.get(structure)
        if self.scope == "global" and not self.structure.supports_global_scope:
            raise ValueError(
                f"{owner}: {self.structure!r} fixes each kernel's sparsity, so "
                'scope="global" (one ranking over all kernels) does not apply.'
            )
        fixed = self.structure.fixed_sparsity
        if fixed is not None and abs(self.schedule.final_sparsity - fixed) > 1e-6:
            raise ValueError(
                f"{owner}: {self.structure!r} fixes every kernel at sparsity "
                f"{fixed:g}, but the schedule ends at "
                f"{self.schedule.final_sparsity:g}; use final_sparsity={fixed:g}."
            )

    @property
    def final_sparsity(self):
        return self.schedule.final_sparsity

    @property
    def step_schedule(self):
        return self.schedule

    def new_update_group(self):
        return updates.MaskUpdate(self)

    def build(self, wrapper, attribute, kernel):
        self.structure.check(
            f"layer '{wrapper.layer.name}' ({attribute.lstrip('_')})",
            kernel.shape,
            wrapper.input_axis(attribute),
            wrapper.target_sparsity,
        )
        return super().build(wrapper, attribute, kernel)

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

    def scores(self, kernel, mask, seed):
        """Per-weight scores; the lowest are pruned at the next update.

        Args:
            kernel: the raw kernel tensor.
            mask: its current 0/1 mask.
            seed: a per-kernel int, stable across runs, for random methods.
        """
        raise NotImplementedError

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
        scores = [
            structure.unit_scores(
                self.scores(ops.cast(k, "float32"), ops.cast(m, "float32"), s), axis
            )
            for k, m, s, axis in zip(kernels, masks, seeds, input_axes)
        ]
        if self.scope == "global":
            kept = mask_ops.prune_lowest_jointly(scores, ops.sum(counts))
        else:
            kept = [mask_ops.prune_lowest(s, counts[i]) for i, s in enumerate(scores)]
        return [
            ops.cast(structure.expand(unit_mask, m.shape, axis), m.dtype)
            for unit_mask, m, axis in zip(kept, masks, input_axes)
        ]

    def get_config(self):
        config = {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scope": self.scope,
        }
        if not isinstance(self.structure, structures_lib.Unstructured):
            config["structure"] = keras.saving.serialize_keras_object(self.structure)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = schedules_lib.get(config["schedule"])
        if "structure" in config:
            config["structure"] = structures_lib.get(config["structure"])
        return cls(**config)


def pruned_first(scores, mask):
    """Scores where already-pruned weights rank below every live one.

    Keeps masks permanent: a gradual schedule never lowers sparsity, so the
    weights pruned before are always among those pruned again.
    """
    return ops.where(ops.greater(mask, 0.5), scores, -1.0)


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

    def build(self, wrapper, attribute, kernel):
        scale = wrapper.add_weight(
            name=f"{attribute.lstrip('_')}_penalty_scale",
            shape=(),
            initializer=keras.initializers.Constant(self.ramp.value(0)),
            trainable=False,
            aggregation="only_first_replica",
        )
        # Seeded per kernel path, so that each kernel's noise is independent.
        generator = keras.random.SeedGenerator(self.kernel_seed(kernel))
        return {"penalty_scale": scale, "seed_generator": generator}

    def kernel_seed(self, kernel):
        """A seed for this kernel, from `seed` and the kernel's variable path."""
        return (self.seed + zlib.crc32(kernel.path.encode())) % (2**31 - 1)

    def penalty(self, wrapper, attribute, kernel):
        """The penalty of one kernel before `weight` (a float32 scalar)."""
        raise NotImplementedError

    def extra_penalty(self, wrapper, attribute, kernel):
        """Terms with their own weights (e.g. weight decay), or None."""
        return None

    def add_penalty(self, wrapper, attribute, kernel):
        state = wrapper.sparsity_variables[attribute]
        total = self.weight * ops.cast(self.penalty(wrapper, attribute, kernel), "float32")
        extra = self.extra_penalty(wrapper, attribute, kernel)
        if extra is not None:
            total = total + extra
        wrapper.add_loss(ops.cast(state["penalty_scale"], "float32") * total)

    def call(self, wrapper, inputs, training=None, **kwargs):
        if training:
            for attribute in wrapper.kernel_attributes:
                self.add_penalty(wrapper, attribute, wrapper.dense_kernel(attribute))
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
