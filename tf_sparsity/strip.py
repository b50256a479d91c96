"""`strip()`: a plain Keras model with the sparse kernels folded in."""

import contextlib
import warnings

import keras
from keras import ops

from tf_sparsity import copying
from tf_sparsity import tree
from tf_sparsity.sparsify import is_sparse
from tf_sparsity.sparsify import sparse_kernels
from tf_sparsity.layers.sparse_wrapper import SparseWrapper

_WRAPPER_NAME = keras.saving.get_registered_name(SparseWrapper)


def strip(model, in_place=False):
    """Returns a plain Keras model computing what `model` computes in inference.

    By default the result is a new model of the same class (a keras-hub
    `GPT2CausalLM` stays one, and generates): no wrapper classes, no mask or
    noise variables, the sparse kernels (zeros where pruned) and copies of
    every other weight; shared layers stay shared. It is rebuilt from the
    model's config, and every variable of the result is checked to have been
    filled from `model`. A model whose config cannot rebuild it (most
    hand-written subclassed models: Keras records no constructor arguments
    for them) is copied live instead, object by object. The sparse model is
    left untouched and can keep training.

    Args:
        model: a sparse model (a model without wrappers is copied).
        in_place: fold the sparse kernels into `model` itself and unwrap it,
            instead of returning a copy (the model loses its masks).

    Returns:
        The plain model (a new, uncompiled one unless `in_place`).

    Raises:
        ValueError: the model can be neither rebuilt nor copied; the
            message gives both reasons.

    Warns:
        UserWarning: naming the sparse layers that have no zero weight yet
            (masks never updated), whose stripped layers are dense.
    """
    check_model(model, "strip")
    warn_if_never_pruned(model, "strip")
    if in_place:
        unwrap_in_place(model)
        return model
    try:
        plain = rebuild(model, unwrap=True)
        copy_weights(model, plain, fold=True)
        return plain
    except RebuildError as rebuild_error:
        try:
            plain = copying.copy_model(model)
        except ValueError as copy_error:
            raise ValueError(
                f"{rebuild_error}\nCopying the live model failed too: "
                f"{copy_error}\n`tfs.strip(model, in_place=True)` strips the "
                "model itself, and `tfs.export_saved_model` exports it "
                "directly."
            ) from copy_error
    unwrap_in_place(plain)
    return plain


def warn_if_never_pruned(model, caller):
    """Warns when sparse layers of `model` have no zero weight at all.

    Their masks were never updated (the model was not trained, or not up to
    its schedule's first update), so stripping or exporting it gives a dense
    model; the warning names those layers.
    """
    unpruned = []
    for kernel in sparse_kernels(model):
        if kernel.size and bool(ops.convert_to_numpy(ops.all(kernel.inference_value()))):
            if kernel.layer_path not in unpruned:
                unpruned.append(kernel.layer_path)
    if unpruned:
        warnings.warn(
            f"{caller}: sparse layer(s) {', '.join(map(repr, unpruned))} are at "
            "0% sparsity (not one zero weight): their masks were never "
            "updated. Masks change when training with `tfs.SparsityCallback` "
            "reaches the schedule's first update step, or with "
            "`tfs.update_masks(model, step)` or `tfs.load_masks`; as they "
            "are, these layers come out dense.",
            UserWarning,
            stacklevel=3,
        )


class RebuildError(ValueError):
    """A model's config does not rebuild the same model."""


def check_model(model, caller):
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"{caller} expects a Keras model, got {model!r}.")


def unwrap_in_place(model):
    """Folds every wrapper's inference kernels into its layer and unwraps it.

    Returns:
        `{id(layer): wrapper}` for every layer unwrapped.
    """
    wrappers = {}

    def unwrap(layer, key_path, name_path):
        if not is_sparse(layer):
            return None
        for kernel in layer.kernels:
            kernel.variable.assign(ops.convert_to_numpy(kernel.inference_value()))
        wrappers[id(layer.layer)] = layer
        return layer.layer

    tree.transform(model, unwrap, stop=is_sparse)
    return wrappers


@contextlib.contextmanager
def folded(model):
    """Runs a block with `model` unwrapped and its sparse kernels folded in.

    The live model itself is changed for the duration of the block (so no
    config is needed and any model `sparsify` accepts works), then its raw
    kernels and its wrappers are restored exactly.
    """
    raw = [
        (kernel.variable, ops.convert_to_numpy(kernel.variable))
        for kernel in sparse_kernels(model)
    ]
    wrappers = unwrap_in_place(model)
    try:
        yield model
    finally:
        tree.transform(model, lambda layer, *_: wrappers.get(id(layer)))
        for variable, value in raw:
            variable.assign(value)


def rebuild(model, unwrap):
    """A fresh model from `model`'s config, optionally without wrappers.

    Classes are resolved from the live model first, so subclassed models
    that were never registered (defined in a notebook, say) rebuild too.
    Wrappers inside owners whose config rebuilds plain sublayers (subclassed
    models, keras-hub layers) are not in any config, so the result has plain
    layers there either way.
    """
    try:
        config = keras.saving.serialize_keras_object(model)
        config.pop("compile_config", None)
        if unwrap:
            config = _unwrap_config(config)
        with keras.saving.custom_object_scope(live_classes(model)):
            return keras.saving.deserialize_keras_object(config)
    except Exception as error:  # Keras raises many types here.
        raise RebuildError(
            f"Cannot rebuild model '{model.name}' ({type(model).__name__}) "
            f"from its config: {type(error).__name__}: {error}"
        ) from error


def live_classes(model):
    """`{registered name: class}` of every non-Keras layer class in `model`."""
    layers = [model] + [node.layer for node in tree.walk(model)]
    classes = {type(layer) for layer in layers}
    return {
        keras.saving.get_registered_name(cls): cls
        for cls in classes
        if not cls.__module__.startswith("keras.")
    }


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


def copy_weights(source, target, fold, transform=None):
    """Copies every layer's own variables from `source` to `target`.

    Layers are matched by key path (see `tree`), variables by name. Where
    `source` has a wrapper, its wrapped layer's variables are copied, with
    the kernels folded to their inference values when `fold` is true.
    Every variable of `target` must be filled: a layer or variable left at
    its fresh initial value raises an error naming it.

    Args:
        source: the live model.
        target: a model rebuilt from `source`'s config.
        fold: whether sparse kernels are copied at their inference values
            (zeros where pruned) rather than as stored.
        transform: optional `transform(variable, value)`, called with each
            variable of `source` and its value (a NumPy array), returning
            the value to write (`shrink` leaves removed units out); it must
            have the shape of the variable written.

    Raises:
        RebuildError: a layer or variable of one model has no counterpart
            in the other, a value does not fit its destination's shape, or
            variables of `target` are left unfilled; the message names them.
    """
    destinations = {node.key_path: node.layer for node in tree.walk(target)}
    pairs = [((), source, target)] + [
        (node.key_path, node.layer, destinations.get(node.key_path))
        for node in tree.walk(source, stop=is_sparse)
    ]
    filled = set()
    for key_path, layer, other in pairs:
        if other is None:
            raise RebuildError(
                f"Cannot copy weights of layer '{layer.name}': the rebuilt "
                f"model has no layer at {list(key_path)}."
            )
        # name -> (the variable of `source`, the value to copy)
        values = {}
        owner = layer.layer if isinstance(layer, SparseWrapper) else layer
        for variable in _own_variables(owner):
            values[_variable_name(variable)] = (variable, variable)
        if isinstance(layer, SparseWrapper) and fold:
            for kernel in layer.kernels:
                values[_variable_name(kernel.variable)] = (kernel.variable, kernel.inference_value())
        for variable in _own_variables(other):
            name = _variable_name(variable)
            if name not in values:
                raise RebuildError(
                    f"Cannot copy weights into layer '{other.name}': variable "
                    f"'{name}' has no counterpart in '{layer.name}'."
                )
            original, value = values[name]
            # A host copy: sharing the device buffer would let one model's
            # jitted step (which donates its buffers on JAX) delete the other's.
            value = ops.convert_to_numpy(value)
            if transform is not None:
                value = transform(original, value)
            if tuple(value.shape) != tuple(variable.shape):
                raise RebuildError(
                    f"Cannot copy weights into layer '{other.name}': variable "
                    f"'{name}' is {tuple(variable.shape)}, but the value from "
                    f"'{original.path}' is {tuple(value.shape)}."
                )
            variable.assign(value)
            filled.add(id(variable))
    unfilled = [v.path for v in target.weights if id(v) not in filled]
    if unfilled:
        raise RebuildError(
            f"Copying model '{source.name}' left {len(unfilled)} variable(s) "
            f"of the rebuilt model unfilled ({', '.join(unfilled[:5])}): its "
            "config builds layers the live model does not have in the same "
            "places."
        )
