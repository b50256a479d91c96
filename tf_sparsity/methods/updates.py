"""How methods update their state during training, on the steps their
schedule chooses: each method returns its own `UpdateGroup` from
`new_update_group()`, so the updater and the callback need no change when a
method is added.
"""

import zlib

import numpy as np
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import masks as mask_ops


class KernelEntry:
    """One sparse kernel: its wrapper, attribute, path and stable seed."""

    def __init__(self, path, wrapper, attribute):
        self.path = path
        self.wrapper = wrapper
        self.attribute = attribute
        self.size = int(np.prod(wrapper.dense_kernel(attribute).shape))
        self.seed = zlib.crc32(f"{path}/{attribute}".encode()) & 0x7FFFFFFF

    @property
    def kernel(self):
        return self.wrapper.dense_kernel(self.attribute)

    @property
    def input_axis(self):
        """The kernel's input (contraction) axis, or None."""
        return self.wrapper.input_axis(self.attribute)

    def state(self, name):
        """The method's variable `name` for this kernel (e.g. "mask")."""
        return self.wrapper.sparsity_variables[self.attribute][name]


class UpdateGroup:
    """The kernels sharing one method (one schedule, one compiled update).

    Args:
        method: the `SparsityMethod` whose kernels these are.
    """

    def __init__(self, method):
        self.method = method
        self.entries = []
        # The model being trained (set by the updater): groups that touch
        # the optimizer's state reach it through `model.optimizer`.
        self.model = None

    def due_update(self, last_checked, step):
        return self.method.step_schedule.due_update(last_checked, step)

    def update(self, step):
        raise NotImplementedError


class RampUpdate(UpdateGroup):
    """Refreshes the regularizer weight of each kernel along the ramp."""

    def update(self, step):
        value = self.method.ramp.value(step)
        for entry in self.entries:
            entry.state("penalty_scale").assign(value)


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
        for entry in self.entries:
            target = entry.wrapper.target_sparsity
            if target is None:
                target = schedule.final_sparsity
            units = structure.num_units(entry.kernel.shape, entry.input_axis)
            counts.append(mask_ops.num_to_prune(min(target * scale, 1.0), units))
        return counts

    def update(self, step):
        if self._compiled is None:
            seeds = [entry.seed for entry in self.entries]
            axes = [entry.input_axis for entry in self.entries]
            method = self.method

            def compute(kernels, masks, counts):
                return method.compute_masks(kernels, masks, counts, seeds, axes)

            self._compiled = _backend.jit_compile(compute)
        counts = ops.convert_to_tensor(np.asarray(self.num_pruned(step), "int32"))
        kernels = [ops.convert_to_tensor(e.kernel) for e in self.entries]
        masks = [ops.convert_to_tensor(e.state("mask")) for e in self.entries]
        for entry, value in zip(self.entries, self._compiled(kernels, masks, counts)):
            entry.state("mask").assign(value)
