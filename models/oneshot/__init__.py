"""One-shot pruning of pretrained language models: `tf-sparsity oneshot`."""
