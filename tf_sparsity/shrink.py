"""`shrink()`: a physically smaller model without the removed units."""

import copy
import warnings

import keras
import numpy as np

from tf_sparsity import dependency
from tf_sparsity import strip as strip_lib
from tf_sparsity import tree
from tf_sparsity.sparsify import sparse_layers


def shrink(model):
    """Returns a smaller plain Keras model without the units pruned away.

    Units (Dense neurons, convolution filters, feed-forward units) and
    attention heads whose every reader is zero (what `tfs.Units()` and
    `tfs.Heads()` pruning leaves; see `tf_sparsity/dependency.py`) are cut
    out: the model is rebuilt from its config with the smaller sizes
    (`units`, `filters`, `num_heads`, `intermediate_dim`, ...), keeping its
    class (a keras-hub backbone stays one), and every other weight is
    copied with the removed rows, columns and channels left out. Its
    inference outputs equal the sparse model's (what `tfs.strip` returns)
    up to float rounding, and it saves, loads and exports with plain Keras.

    A unit can go only when nothing reads it: the next layers' input rows
    (or, for a head, its rows of the output projection) must all be zero.
    Every group keeps at least one unit.

    Args:
        model: a sparse model (from `tfs.sparsify`) or a plain one; a
            Functional or Sequential model, or any model whose config
            rebuilds it (keras-hub backbones and task models).

    Returns:
        A new, uncompiled model.

    Raises:
        ValueError: the model cannot be rebuilt from its config, or a config
            field that counts removed units cannot be changed (the message
            names the layer and the field).
    """
    if sparse_layers(model):
        strip_lib.warn_if_never_pruned(model, "shrink")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = strip_lib.strip(model)
    else:
        plain = model
    groups = [
        group
        for kind in dependency.KINDS
        for group in dependency.analyze(plain, kind).groups
    ]
    keeps, fields = {}, _Fields(plain)
    for group in groups:
        kept = _kept_units(group)
        if kept is None or kept.all():
            continue
        for resize in group.resizes:
            if resize.refusal:
                raise ValueError(
                    f"Cannot shrink the {group.name}: {resize.refusal}; its config "
                    f"field `{resize.field}` cannot be changed. Prune it with "
                    "another structure, or keep these layers out of `sparsify`."
                )
            fields.set(resize.layer, resize.field, int(kept.sum()), group)
        for coupling in group.couplings:
            positions = coupling.index
            keep = (positions < 0) | kept[np.maximum(positions, 0)]
            key = (id(coupling.variable), coupling.axis)
            keeps[key] = keeps.get(key, True) & keep
    smaller = fields.rebuild()
    _copy_sliced(plain, smaller, keeps)
    return smaller


def _kept_units(group):
    """Bool array: the units kept (at least one); None to keep them all."""
    used = dependency.live_units(group)
    if used is not None and not used.any():
        used[0] = True
    return used


class _Fields:
    """The config of a model, with the fields counting units changed."""

    def __init__(self, model):
        self.model = model
        self.config = keras.saving.serialize_keras_object(model)
        self.config.pop("compile_config", None)
        self.original = copy.deepcopy(self.config)
        self.owners = {id(n.layer): n.owner for n in tree.walk(model)}
        self.shared = {}  # (id(config dict), field) -> (value, group name)

    def set(self, layer, field, value, group):
        entry = _layer_config(self.config, layer.name)
        if entry is not None and field in entry:
            entry[field] = _resized(entry[field], value)
            return
        current = layer.get_config().get(field)
        owner = self.owners.get(id(layer))
        while owner is not None:
            entry = _layer_config(self.config, owner.name)
            original = _layer_config(self.original, owner.name)
            if entry is not None and field in entry and original[field] == current:
                key = (id(entry), field)
                if key in self.shared and self.shared[key][0] != value:
                    raise ValueError(
                        f"Cannot shrink '{owner.name}' ({type(owner).__name__}): its "
                        f"config field `{field}` is one value for all its layers, "
                        f"but the {self.shared[key][1]} keep {self.shared[key][0]} "
                        f"and the {group.name} keep {value}. Prune every layer to "
                        'the same count: scope="layer" and a uniform distribution.'
                    )
                self.shared[key] = (value, group.name)
                entry[field] = _resized(entry[field], value)
                return
            owner = self.owners.get(id(owner))
        raise ValueError(
            f"Cannot shrink the {group.name}: layer '{layer.name}' "
            f"({type(layer).__name__}) is built by a model or layer whose config "
            f"has no field for its `{field}`, so the smaller size cannot be "
            "written into the config."
        )

    def rebuild(self):
        # Layers record the input shapes they were built with; those change,
        # and every layer of a graph is built again when the graph is rebuilt.
        _drop_build_configs(self.config.get("config"))
        try:
            with keras.saving.custom_object_scope(strip_lib.live_classes(self.model)):
                return keras.saving.deserialize_keras_object(self.config)
        except Exception as error:  # Keras raises many types here.
            raise ValueError(
                f"Cannot rebuild model '{self.model.name}' "
                f"({type(self.model).__name__}) with fewer units from its config: "
                f"{type(error).__name__}: {error}"
            ) from error


def _resized(old, value):
    """`old` (an int, None, or a shape whose last entry counts units) with
    the count `value`."""
    if isinstance(old, (list, tuple)):
        return type(old)(list(old[:-1]) + [value])
    return value


def _drop_build_configs(item):
    if isinstance(item, dict):
        item.pop("build_config", None)
        for value in item.values():
            _drop_build_configs(value)
    elif isinstance(item, list):
        for value in item:
            _drop_build_configs(value)


def _layer_config(config, name):
    """The `config` dict of the layer called `name` inside a serialized
    model, or None."""
    found = []

    def visit(item):
        if isinstance(item, dict):
            inner = item.get("config")
            if isinstance(inner, dict) and inner.get("name") == name and "class_name" in item:
                found.append(inner)
            for value in item.values():
                visit(value)
        elif isinstance(item, list):
            for value in item:
                visit(value)

    visit(config)
    return found[0] if found else None


def _copy_sliced(source, target, keeps):
    """Copies every variable of `source` into `target` as `strip` does,
    leaving out the removed positions (`keeps`: (id(variable), axis) -> the
    bool array of positions kept)."""
    axes_of = {}
    for (variable_id, axis), keep in keeps.items():
        axes_of.setdefault(variable_id, []).append((axis, keep))

    def leave_out_removed(variable, value):
        for axis, keep in axes_of.get(id(variable), ()):
            value = np.compress(keep, value, axis=axis)
        return value

    try:
        strip_lib.copy_weights(source, target, fold=False, transform=leave_out_removed)
    except strip_lib.RebuildError as error:
        raise ValueError(
            f"Cannot shrink: {error} A shape that differs means a coupling of "
            "this layer is not known to tf_sparsity."
        ) from error
