"""Sparse layer wrappers and the table of supported layer types."""

from tf_sparsity.layers.kernels import is_supported
from tf_sparsity.layers.kernels import kernel_attributes
from tf_sparsity.layers.sparse_wrapper import SparseWrapper
from tf_sparsity.layers.kernels import register_sparsifiable
