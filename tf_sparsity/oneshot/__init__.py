"""One-shot (post-training) pruning: `tfs.prune_oneshot` and its methods."""

from tf_sparsity.oneshot.base import InputStatistics
from tf_sparsity.oneshot.base import OneShotMethod
from tf_sparsity.oneshot.linear import LinearView
from tf_sparsity.oneshot.magnitude import OneShotMagnitude
from tf_sparsity.oneshot.prune import prune_oneshot
from tf_sparsity.oneshot.registry import REGISTRY
from tf_sparsity.oneshot.sparsegpt import SparseGPT
from tf_sparsity.oneshot.wanda import Wanda
