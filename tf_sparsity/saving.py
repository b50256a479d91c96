"""`save()` / `load()`: `.keras` files for sparse models of any structure.

Wrappers inside Sequential and functional models are part of the model's
config, so `model.save("m.keras")` and `keras.saving.load_model` work for
them. Wrappers inside subclassed models or custom layers (the projections of
`MultiHeadAttention`, say) are not: the owner's config rebuilds plain layers.
`save` therefore adds a `tf_sparsity.json` entry to the `.keras` archive that
lists those wrappers by key path (see `tree`); `load` rebuilds the model from
its config, wraps those layers again, compiles it as it was, and only then
loads the weights (masks and optimizer state included).
"""

import json
import os
import zipfile

import keras

from tf_sparsity import sparsify as sparsify_lib
from tf_sparsity import tree
from tf_sparsity.layers.sparse_wrapper import SparseWrapper

_ENTRY = "tf_sparsity.json"
_FORMAT_VERSION = 1


def _in_config(key_path):
    """Whether a wrapper at `key_path` is rebuilt from the model config."""
    return all(step[0] == "layer" for step in key_path)


def nested_wrappers(model):
    """Wrappers that the model's config cannot rebuild, as JSON records."""
    records = []
    for node in tree.walk(model, stop=sparsify_lib.is_sparse):
        if sparsify_lib.is_sparse(node.layer) and not _in_config(node.key_path):
            wrapper = node.layer
            records.append(
                {
                    "key_path": [list(step) for step in node.key_path],
                    "method": keras.saving.serialize_keras_object(wrapper.method),
                    "target_sparsity": wrapper.target_sparsity,
                }
            )
    return records


def save(model, filepath, **kwargs):
    """Saves a sparse model (nested wrappers included) to a `.keras` file.

    Args:
        model: the model.
        filepath: path ending in `.keras`.
        **kwargs: passed to `model.save`.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"tfs.save writes .keras files; got '{filepath}'.")
    model.save(filepath, **kwargs)
    record = {"version": _FORMAT_VERSION, "wrappers": nested_wrappers(model)}
    with zipfile.ZipFile(filepath, "a") as archive:
        archive.writestr(_ENTRY, json.dumps(record))


def load(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model written by `tfs.save` (or by `model.save`).

    Args:
        filepath: path of the `.keras` file.
        custom_objects: as for `keras.saving.load_model`.
        compile: compile the model as it was when saved.
        safe_mode: as for `keras.saving.load_model`.

    Returns:
        The model, with masks, weights and (if compiled) optimizer state.
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such model file: '{filepath}'.")
    try:
        with zipfile.ZipFile(filepath) as archive:
            names = set(archive.namelist())
            config = json.loads(archive.read("config.json"))
            record = (
                json.loads(archive.read(_ENTRY)) if _ENTRY in names else None
            )
    except (zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"'{filepath}' is not a .keras archive: {error}") from None
    if not record or not record["wrappers"]:
        return keras.saving.load_model(
            filepath,
            custom_objects=custom_objects,
            compile=compile,
            safe_mode=safe_mode,
        )
    if record.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"'{filepath}' was written by a newer tf_sparsity "
            f"(format {record.get('version')})."
        )
    compile_config = config.pop("compile_config", None)
    with keras.saving.custom_object_scope(custom_objects or {}):
        model = keras.saving.deserialize_keras_object(config, safe_mode=safe_mode)
        model = rewrap(model, record["wrappers"])
        if compile and compile_config:
            model.compile_from_config(compile_config)
    model.load_weights(filepath)
    return model


def rewrap(model, records):
    """Wraps again the layers at the key paths listed in `records`."""
    wanted = {
        tuple(tuple(step) for step in r["key_path"]): r for r in records
    }

    def wrap(layer, key_path, name_path):
        record = wanted.pop(tuple(tuple(step) for step in key_path), None)
        if record is None:
            return None
        method = keras.saving.deserialize_keras_object(record["method"])
        return SparseWrapper(layer, method, target_sparsity=record["target_sparsity"])

    model = tree.transform(model, wrap, stop=sparsify_lib.is_sparse)
    if wanted:
        missing = ", ".join(str(list(k)) for k in wanted)
        raise ValueError(
            f"The rebuilt model has no layer at {missing}; was it saved from "
            "a different version of its code?"
        )
    return model
