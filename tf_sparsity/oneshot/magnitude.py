"""One-shot magnitude pruning: the baseline every one-shot paper reports."""

from keras import ops

from tf_sparsity.oneshot import base


class OneShotMagnitude(base.OneShotMethod):
    """Removes each layer's smallest weights by |w|, compared across the
    whole layer (blocks by their mean |w|, N:M within each group), as the
    SparseGPT and Wanda papers' magnitude baseline does. Reads no
    calibration data.

    Args:
        sparsity: the fraction of each layer's weights to remove.
        structure: `tfs.Unstructured()` (default), `tfs.NM(n, m)` or
            `tfs.Block((rows, cols))`.
    """

    name = "magnitude"
    needs_calibration = False

    def prune_kernel(self, kernel, input_axis):
        """The 0/1 keep-mask of any kernel (its shape; units along
        `input_axis` as the library's structures define them)."""
        def select(kernel):
            scores = ops.abs(ops.cast(kernel, "float32"))
            return base.keep_lowest_pruned(scores, self.sparsity, self.structure, input_axis)

        select.__name__ = f"select_axis_{input_axis}"
        return self.compiled(select, tuple(kernel.shape))(ops.convert_to_tensor(kernel))

    def prune_matrix(self, matrix, statistics):
        keep = base.keep_lowest_pruned(ops.abs(matrix), self.sparsity, self.structure)
        return matrix * keep, keep
