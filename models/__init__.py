"""The experiments around the library (installed as `tf_sparsity_models`):
the reference tasks of the paper and the `tf-sparsity` command.

`common/` holds what every task shares (task interface and registry, run
configs, the runner, strategies, TFDS reading); each task is one folder.
`cli` is the `tf-sparsity` command, `demo/` its LeNet-300-100 demo and
`reporting/` its result rows, reports and sweeps. These modules use
`tf_sparsity`; the library never imports them.
"""
