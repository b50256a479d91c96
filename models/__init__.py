"""Reference tasks of the paper (installed as `tf_sparsity_models`).

`common/` holds what every task shares (task interface and registry, run
configs, the runner, strategies, TFDS reading); each task is one folder.
"""
