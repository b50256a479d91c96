"""The registry of sparsity methods: each name and the class that implements
it, as `"module:Class"` text, so that tools which only need the names
(`tf-sparsity sweep`) do not load Keras. `tfs.METHODS` holds the classes.

Adding a method: one new module under `tf_sparsity/methods/`, one line here.

This module must import nothing: `tf_sparsity_models` reads it on its own,
by file path, so that `tf-sparsity sweep` never loads Keras.
"""

METHOD_CLASSES = {
    "magnitude": "tf_sparsity.methods.magnitude:MagnitudePruning",
    "random": "tf_sparsity.methods.random_pruning:RandomPruning",
    "variational_dropout": "tf_sparsity.methods.variational_dropout:VariationalDropout",
    "l0": "tf_sparsity.methods.l0:L0Regularization",
    "fixed_mask": "tf_sparsity.methods.fixed_mask:FixedMask",
    "set": "tf_sparsity.methods.set:SET",
    "rigl": "tf_sparsity.methods.rigl:RigL",
}
