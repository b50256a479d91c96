"""Fixed masks: sparse training with a mask that never changes (the
lottery-ticket and train-from-scratch experiments)."""

import keras

from tf_sparsity.methods import base


@keras.saving.register_keras_serializable(package=base.PACKAGE)
class FixedMask(base.MaskedMethod):
    """Keeps each kernel's mask as it is: pruned weights stay exactly zero
    through training, `strip` and export.

    Masks start at ones (a dense model); `tfs.load_masks(model, path)` puts
    in the masks a pruned run saved with `tfs.save_masks`. No update is ever
    due, so training with `tfs.SparsityCallback` (or without it) is the
    same.
    """

    name = "fixed_mask"

    def __init__(self):
        super().__init__(schedule=None)

    @classmethod
    def recipe(
        cls, target_sparsity, total_steps, num_examples=None, seed=None, **overrides
    ):
        """A `FixedMask`. The masks come from `tfs.load_masks`, so the
        target and a schedule (`begin_step`, `end_step`, `frequency`, which
        task presets may carry) do not apply and are ignored."""
        for name in ("begin_step", "end_step", "frequency", "initial_sparsity"):
            overrides.pop(name, None)
        return cls(**overrides)

    def get_config(self):
        return {}
