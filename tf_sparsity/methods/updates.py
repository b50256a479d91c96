"""How methods update their state during training, on the steps their
schedule chooses: each method returns its own `UpdateGroup` from
`new_update_group()`, so the updater and the callback need no change when a
method is added.
"""

import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import masks as mask_ops
from tf_sparsity import optimizer_state


class UpdateGroup:
    """The kernels sharing one method (one schedule, one compiled update).

    Args:
        method: the `SparsityMethod` whose kernels these are.

    Attributes:
        kernels: the `SparseKernel`s updated together (filled by the
            updater, in model order).
        model: the model being trained (set by the updater): groups that
            touch the optimizer's state reach it through `model.optimizer`.
    """

    def __init__(self, method):
        self.method = method
        self.kernels = []
        self.model = None

    def due_update(self, last_checked, step):
        return self.method.step_schedule.due_update(last_checked, step)

    def update(self, step):
        raise NotImplementedError


class RampUpdate(UpdateGroup):
    """Refreshes the regularizer weight of each kernel along the ramp."""

    def update(self, step):
        value = self.method.ramp.value(step)
        for kernel in self.kernels:
            kernel.state.penalty_scale.assign(value)


class MaskUpdate(UpdateGroup):
    """Recomputes the masks of one pruning method (one XLA function)."""

    def __init__(self, method):
        super().__init__(method)
        self._compiled = None

    def num_pruned(self, step):
        """Units (weights, or blocks) to prune in each kernel at `step`,
        exactly."""
        schedule, structure = self.method.schedule, self.method.structure
        scale = schedule.sparsity(step) / schedule.final_sparsity if (
            schedule.final_sparsity > 0
        ) else 0.0
        counts = []
        for kernel in self.kernels:
            target = kernel.target
            if target is None:
                target = schedule.final_sparsity
            units = structure.num_units(kernel.shape, kernel.input_axis)
            counts.append(mask_ops.num_to_prune(min(target * scale, 1.0), units))
        return counts

    def update(self, step):
        if self._compiled is None:
            seeds = [kernel.seed for kernel in self.kernels]
            axes = [kernel.input_axis for kernel in self.kernels]
            method = self.method

            def compute(kernels, masks, counts):
                return method.compute_masks(kernels, masks, counts, seeds, axes)

            self._compiled = _backend.jit_compile(compute)
        counts = ops.convert_to_tensor(np.asarray(self.num_pruned(step), "int32"))
        values = [ops.convert_to_tensor(k.variable) for k in self.kernels]
        masks = [ops.convert_to_tensor(k.state.mask) for k in self.kernels]
        for kernel, value in zip(self.kernels, self._compiled(values, masks, counts)):
            kernel.state.mask.assign(value)
        kept = [k for k in self.kernels if k.wrapper.masked_zeros_kept]
        if kept:
            slots = optimizer_state.optimizer_slots(self.model)
            for kernel in kept:
                self.method.keep_masked_zeros(kernel, slots.get(id(kernel.variable), ()))
