"""Wanda: pruning by weights and activations (Sun et al., 2023).

Each weight is scored by |W_ij| * ||X_j||_2, its magnitude times the L2
norm of the input feature it reads, accumulated over the calibration
tokens, and the lowest scores are removed within each output row (the
comparison group the paper found best for language models). No weight is
updated. Reference: locuslab/wanda, `lib/prune.py` (`prune_wanda`).
"""

from keras import ops

from tf_sparsity import structures as structures_lib
from tf_sparsity.oneshot import base


class Wanda(base.OneShotMethod):
    """Wanda one-shot pruning.

    Unstructured sparsity compares scores within each output row (the
    paper's choice); `NM(n, m)` keeps the n highest of every m consecutive
    inputs of a row (the paper's 2:4 and 4:8 settings); `Block` ranks blocks
    by their mean score across the layer.

    Args:
        sparsity: the fraction of each layer's weights to remove.
        structure: `tfs.Unstructured()` (default), `tfs.NM(n, m)` or
            `tfs.Block((rows, cols))`.
    """

    name = "wanda"

    def prune_matrix(self, matrix, statistics):
        # sqrt of the mean squared activation: the reference's scaler_row
        # (a per-column constant factor, which leaves each row's order as
        # ||X_j||_2 would).
        norms = ops.sqrt(statistics.squared_norms / max(statistics.num_samples, 1))
        return self.compiled(self.select, *matrix.shape)(matrix, norms)

    def select(self, matrix, norms):
        """`(pruned matrix, keep)` from W and the input norms (pure)."""
        scores = ops.abs(matrix) * norms[None, :]
        if isinstance(self.structure, structures_lib.Unstructured):
            keep = base.keep_lowest_pruned_per_row(scores, self.sparsity)
        else:
            keep = base.keep_lowest_pruned(scores, self.sparsity, self.structure)
        return matrix * keep, keep
