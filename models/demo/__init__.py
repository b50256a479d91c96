"""The `tf-sparsity demo` job: LeNet-300-100 on a small offline MNIST set."""
