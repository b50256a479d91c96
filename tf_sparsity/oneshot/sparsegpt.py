"""SparseGPT: one-shot pruning with approximate second-order reconstruction
(Frantar & Alistarh, 2023).

For a layer W (out, in) with calibration inputs X (in, tokens), SparseGPT
minimises ||W X - W' X||^2 over sparse W' one input column at a time.
Algorithm 1 of the paper, as its reference code (IST-DASLab/sparsegpt,
`SparseGPT.fasterprune`) runs it:

1. H = 2 X X^T / n (n calibration sequences); inputs that are always zero
   ("dead") get H_jj = 1 and their weights set to zero; H is damped by
   `percdamp` times the mean of its diagonal.
2. U = the upper Cholesky factor of H^-1 (rows of U are the OBS update
   directions; d_j = U_jj).
3. Columns are processed in lazy blocks of `blocksize`. At the start of each
   block the mask of that block is chosen from the current weights by
   w^2 / d^2 (N:M: at the start of every group of m columns). Each column is
   then pruned and its error (w - q) / d spread over the block's remaining
   columns by the row of U; the block's accumulated errors update all later
   columns with one matrix product.

The mask of each lazy block removes exactly round(sparsity x block) weights
(units, for `Block`), where the reference code's threshold removes one more
and all ties: the paper's "p% of the block".
"""

from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity import structures as structures_lib
from tf_sparsity.oneshot import base


class SparseGPT(base.OneShotMethod):
    """SparseGPT one-shot pruning with weight reconstruction.

    Args:
        sparsity: the fraction of each layer's weights to remove.
        structure: `tfs.Unstructured()` (default), `tfs.NM(n, m)` or
            `tfs.Block((rows, cols))` (blocks chosen inside each lazy block,
            so `blocksize` must be a multiple of the block's columns).
        blocksize: columns per lazy block and mask-selection block (the
            reference's 128).
        percdamp: dampening added to H's diagonal, as a fraction of its mean
            diagonal (the reference's 0.01).
    """

    name = "sparsegpt"
    second_moment = True

    def __init__(self, sparsity=0.5, structure=None, blocksize=128, percdamp=0.01):
        super().__init__(sparsity, structure)
        self.blocksize = validate.integer("prune_oneshot", "blocksize", blocksize, minimum=1)
        self.percdamp = validate.number("prune_oneshot", "percdamp", percdamp, minimum=0.0)

    def check_layer(self, where, view):
        super().check_layer(where, view)
        if isinstance(self.structure, structures_lib.NM):
            group = self.structure.m
        elif isinstance(self.structure, structures_lib.Block):
            group = self.structure.shape[1]
        else:
            return
        if self.blocksize % group:
            raise ValueError(
                f"SparseGPT chooses {self.structure!r} inside lazy blocks of "
                f"`blocksize={self.blocksize}` columns, which must be a multiple "
                f"of {group} (pruning {where})."
            )

    def prune_matrix(self, matrix, statistics):
        rows, cols = (int(d) for d in matrix.shape)
        hessian = statistics.gram * (2.0 / max(statistics.num_samples, 1))
        return self.compiled(self.sweep, rows, cols)(matrix, hessian)

    def sweep(self, matrix, hessian):
        """SparseGPT on one layer (pure; compiled by `prune_matrix`).

        Args:
            matrix: float32 (rows, cols): W.
            hessian: float32 (cols, cols): 2 X X^T / n.

        Returns:
            `(new_matrix, keep)`, both float32 (rows, cols).
        """
        cols = int(matrix.shape[1])
        eye = ops.eye(cols, dtype="float32")
        dead = ops.equal(ops.diagonal(hessian), 0.0)
        hessian = hessian + eye * ops.cast(dead, "float32")[None, :]
        matrix = ops.where(dead[None, :], 0.0, matrix)
        damp = self.percdamp * ops.mean(ops.diagonal(hessian))
        lower = ops.cholesky(hessian + damp * eye)
        lower_inverse = ops.solve_triangular(lower, eye, lower=True)
        inverse = ops.matmul(ops.transpose(lower_inverse), lower_inverse)
        upper = ops.transpose(ops.cholesky(inverse))

        pruned_blocks, keep_blocks = [], []
        rest = matrix
        for start in range(0, cols, self.blocksize):
            end = min(start + self.blocksize, cols)
            count = end - start
            block = rest[:, :count]
            block_upper = upper[start:end, start:end]
            diagonal = ops.diagonal(block_upper)
            if isinstance(self.structure, structures_lib.NM):
                block, keep = self._sweep_nm_groups(block, block_upper, diagonal)
            else:
                scores = ops.square(block) / ops.square(diagonal)[None, :]
                keep = base.keep_lowest_pruned(scores, self.sparsity, self.structure)
                block = ops.fori_loop(
                    0, count, lambda j, b: _prune_column(j, b, keep, block_upper, diagonal), block
                )
            # `block` holds each column as it was when pruned.
            pruned = block * keep
            errors = (block - pruned) / diagonal[None, :]
            rest = rest[:, count:] - ops.matmul(errors, upper[start:end, end:])
            pruned_blocks.append(pruned)
            keep_blocks.append(keep)
        return ops.concatenate(pruned_blocks, axis=1), ops.concatenate(keep_blocks, axis=1)

    def _sweep_nm_groups(self, block, block_upper, diagonal):
        """The column sweep of one lazy block under N:M: each group's mask
        is chosen from the weights as they are when the sweep reaches it."""
        rows, count = (int(d) for d in block.shape)
        n, m = self.structure.n, self.structure.m

        def group(g, carry):
            block, keep = carry
            first = g * m
            weights = ops.slice(block, (0, first), (rows, m))
            scale = ops.slice(diagonal, (first,), (m,))
            scores = ops.square(weights) / ops.square(scale)[None, :]
            rank = self.structure._rank_in_groups(scores)
            keep = ops.slice_update(keep, (0, first), ops.cast(ops.greater_equal(rank, m - n), "float32"))
            for offset in range(m):
                block = _prune_column(first + offset, block, keep, block_upper, diagonal)
            return block, keep

        return ops.fori_loop(0, count // m, group, (block, ops.zeros((rows, count), "float32")))

    def __repr__(self):
        return (
            f"SparseGPT(sparsity={self.sparsity:g}, structure={self.structure!r}, "
            f"blocksize={self.blocksize}, percdamp={self.percdamp:g})"
        )


def _prune_column(j, block, keep, block_upper, diagonal):
    """Prunes column `j` of a lazy block and moves its error onto the later
    columns (U is upper triangular, so earlier ones get exact zeros). Column
    j itself keeps its value, which the caller reads back as "w"."""
    count = int(block.shape[1])
    weight = ops.take(block, j, axis=1)
    error = weight * (1.0 - ops.take(keep, j, axis=1)) / ops.take(diagonal, j)
    direction = ops.where(ops.equal(ops.arange(count), j), 0.0, ops.take(block_upper, j, axis=0))
    return block - error[:, None] * direction[None, :]
