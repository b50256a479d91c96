"""`strip()`: a plain Keras model with the sparse kernels folded in."""

import keras
from keras import ops

from tf_sparsity import sparsify as sparsify_lib
from tf_sparsity import tree
from tf_sparsity.layers.sparse_wrapper import SparseWrapper

_WRAPPER_NAME = keras.saving.get_registered_name(SparseWrapper)


def strip(model):
    """Returns a plain Keras model computing what `model` computes in inference.

    The result has the structure of the model before `sparsify` (no wrapper
    classes, no mask or noise variables), fresh variables holding the
    sparse kernels (zeros where pruned) and copies of every other weight. The
    sparse model is left untouched and can keep training.

    Args:
        model: a sparse model (a model without wrappers is copied).

    Returns:
        A new, uncompiled Keras model.
    """
    plain = rebuild(model, unwrap=True)
    copy_weights(model, plain, fold=True)
    return plain


def rebuild(model, unwrap):
    """A fresh model from `model`'s config, optionally without wrappers.

    Wrappers that live in graph models are part of the config; `unwrap`
    replaces them by their inner layer. Wrappers inside subclassed models
    and custom layers are not in any config, so the result has plain layers
    there either way.
    """
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    if unwrap:
        config = _unwrap_config(config)
    return keras.saving.deserialize_keras_object(config)


def _unwrap_config(config):
    if isinstance(config, list):
        return [_unwrap_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("registered_name") == _WRAPPER_NAME or config.get(
        "class_name"
    ) == _WRAPPER_NAME:
        inner = dict(config["config"]["layer"])
        for key in ("name", "inbound_nodes"):  # Graph wiring of the wrapper.
            if key in config:
                inner[key] = config[key]
        return _unwrap_config(inner)
    return {key: _unwrap_config(value) for key, value in config.items()}


def _own_variables(layer):
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def _variable_name(variable):
    return variable.path.rsplit("/", 1)[-1]


def copy_weights(source, target, fold):
    """Copies every layer's own variables from `source` to `target`.

    Layers are matched by key path (see `tree`), variables by name. Where
    `source` has a wrapper, its wrapped layer's variables are copied, with
    the kernels folded to their inference values when `fold` is true.
    """
    destinations = {node.key_path: node.layer for node in tree.walk(target)}
    pairs = [((), source, target)] + [
        (node.key_path, node.layer, destinations.get(node.key_path))
        for node in tree.walk(source, stop=sparsify_lib.is_sparse)
    ]
    for key_path, layer, other in pairs:
        if other is None:
            raise ValueError(
                f"Cannot copy weights of layer '{layer.name}': the rebuilt "
                f"model has no layer at {list(key_path)}."
            )
        values = {}
        if isinstance(layer, SparseWrapper):
            kernels = layer.inference_kernels() if fold else {}
            inner = layer.layer
            for variable in _own_variables(inner):
                values[_variable_name(variable)] = variable
            for attribute, value in kernels.items():
                values[_variable_name(getattr(inner, attribute))] = value
        else:
            for variable in _own_variables(layer):
                values[_variable_name(variable)] = variable
        for variable in _own_variables(other):
            name = _variable_name(variable)
            if name not in values:
                raise ValueError(
                    f"Cannot copy weights into layer '{other.name}': variable "
                    f"'{name}' has no counterpart in '{layer.name}'."
                )
            # A host copy: sharing the device buffer would let one model's
            # jitted step (which donates its buffers on JAX) delete the other's.
            variable.assign(ops.convert_to_numpy(values[name]))
