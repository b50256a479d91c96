"""Reference tasks of the paper (installed as `tf_sparsity_models`)."""
