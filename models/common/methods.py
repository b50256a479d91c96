"""The names of the library's sparsity methods, without importing it.

`import tf_sparsity` loads Keras (the package imports its whole API), which
`tf-sparsity sweep` must not pay for just to check method names. The
registry, `tf_sparsity/method_names.py`, imports nothing, so it is loaded
here straight from its file: `importlib.util.find_spec` finds a top-level
package without running its `__init__`.
"""

import functools
import importlib.util
import pathlib


@functools.cache
def _registry():
    spec = importlib.util.find_spec("tf_sparsity")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the tf_sparsity package is not installed")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "method_names.py"
    # A private name: this is not the `tf_sparsity.method_names` module.
    module_spec = importlib.util.spec_from_file_location("_tf_sparsity_method_names", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def names():
    """The method names of `tfs.METHODS`, sorted (without "dense")."""
    return tuple(sorted(_registry().METHOD_CLASSES))
