"""Sparse layer wrappers, their kernels and the table of supported layer types."""

from tf_sparsity.layers.kernels import KernelSpec
from tf_sparsity.layers.kernels import is_supported
from tf_sparsity.layers.kernels import kernel_specs
from tf_sparsity.layers.kernels import register_sparsifiable
from tf_sparsity.layers.sparse_kernel import SparseKernel
from tf_sparsity.layers.sparse_wrapper import SparseWrapper
