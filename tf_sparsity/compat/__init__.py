"""Other libraries' APIs on tf_sparsity.

`from tf_sparsity.compat import tfmot` replaces
`import tensorflow_model_optimization as tfmot` for tfmot's pruning API
(`tfmot.sparsity.keras`); see `tf_sparsity.compat.tfmot`.
"""
