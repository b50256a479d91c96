"""`save()` / `load()`: `.keras` files for sparse models of any structure.

Wrappers inside Sequential and functional models are part of the model's
config, so `model.save("m.keras")` and `keras.saving.load_model` work for
them. Wrappers inside subclassed models or custom layers (the projections of
`MultiHeadAttention`, say) are not: the owner's config rebuilds plain layers.
`save` therefore adds a `tf_sparsity.json` entry to the `.keras` archive that
lists those wrappers by key path (see `tree`); `load` rebuilds the model from
its config, wraps those layers again, compiles it as it was, and only then
loads the weights (masks and optimizer state included). Such a file's
`config.json` names a stand-in class, so that `keras.saving.load_model`
refuses it at once instead of loading a dense model; and each wrapper saves
one entry more than its plain layer would load, so no weights file of a
sparse model loads silently into a plain one.
"""

import json
import os
import sys
import zipfile

import keras

from tf_sparsity.sparsify import is_sparse
from tf_sparsity import tree
from tf_sparsity.layers.sparse_wrapper import SparseWrapper

_ENTRY = "tf_sparsity.json"
# 3: key paths are the same on every backend (attribute steps are
# `["attr", name]` on TensorFlow too) and reach into nested containers
# (`["item", name, key, ...]`). 1 and 2 are still read.
_FORMAT_VERSION = 3
_PACKAGE = "tf_sparsity"


def _config_rebuilds_children(owner):
    """Whether `owner`'s config lists its children (plain graph models)."""
    return type(owner) is keras.Sequential or (
        tree._Functional is not None and type(owner) is tree._Functional
    )


def sparse_wrapper_records(model):
    """Every wrapper of `model` as a JSON record, and whether the model's
    config rebuilds them all."""
    records = []
    all_in_config = True
    owners = {}
    for node in tree.walk(model, stop=is_sparse):
        owners[id(node.layer)] = node.owner
        if not is_sparse(node.layer):
            continue
        owner = node.owner
        while owner is not None:
            if not _config_rebuilds_children(owner):
                all_in_config = False
            owner = owners.get(id(owner))
        wrapper = node.layer
        records.append(
            {
                "key_path": [list(step) for step in node.key_path],
                "path": tree.path_string(node.name_path),
                "method": keras.saving.serialize_keras_object(wrapper.method),
                "target_sparsity": wrapper.target_sparsity,
            }
        )
    return records, all_in_config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseModelFile(keras.layers.Layer):
    """Stands in the config of a `.keras` file only `tfs.load` can restore.

    The model's own config rebuilds plain layers where it had sparse ones
    (inside subclassed models or keras-hub layers), so loading it with
    `keras.saving.load_model` would give a different model; this class
    makes that load fail at once and say what to do.
    """

    @classmethod
    def from_config(cls, config):
        raise ValueError(
            f"This .keras file holds a sparse model ('{config.get('model')}') "
            "whose sparse layers its own config cannot rebuild. Load it with "
            "`tf_sparsity.load(path)`."
        )


def save(model, filepath, overwrite=True, **kwargs):
    """Saves a sparse model (nested wrappers included) to a `.keras` file.

    Sequential and functional models whose wrappers are all in their config
    give an ordinary `.keras` file (loadable with `keras.saving.load_model`
    too). Otherwise (wrappers inside subclassed models, keras-hub models,
    `MultiHeadAttention`) the file can only be restored by `tfs.load`, and
    `keras.saving.load_model` refuses it with an error saying so.

    Args:
        model: the model.
        filepath: path ending in `.keras`.
        overwrite: replace an existing file. If False and the file exists,
            you are asked at the terminal (as by Keras); without a terminal
            (scripts, jobs) that is an error instead of a prompt.
        **kwargs: passed to `keras.saving.save_model`.

    Raises:
        ValueError: the path is not a `.keras` file, or the model cannot be
            described by a config (a layer's `get_config` fails).
        FileExistsError: the file exists, `overwrite=False`, and there is
            no terminal to ask at.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"tfs.save writes .keras files; got '{filepath}'.")
    if not isinstance(model, keras.Model):
        raise TypeError(f"tfs.save expects a Keras model, got {model!r}.")
    try:
        config = keras.saving.serialize_keras_object(model)
    except NotImplementedError as error:
        reason = " ".join(str(error).split("Example:")[0].split())
        raise ValueError(
            f"Cannot save model '{model.name}' ({type(model).__name__}) as a "
            f".keras file: Keras cannot write its config ({reason}). Give the "
            "class a `get_config` returning every `__init__` argument, or "
            "save the weights only (`model.save_weights('w.weights.h5')`) and "
            "rebuild and sparsify the model in code before loading them."
        ) from None
    if not overwrite and os.path.exists(filepath) and not _confirm_overwrite(filepath):
        return
    records, all_in_config = sparse_wrapper_records(model)
    # Asked here: Keras must not ask again (and its refusal would leave
    # the old file, to which the entry below would then be appended).
    keras.saving.save_model(model, filepath, overwrite=True, **kwargs)
    record = {"version": _FORMAT_VERSION, "wrappers": records}
    if all_in_config:
        with zipfile.ZipFile(filepath, "a") as archive:
            archive.writestr(_ENTRY, json.dumps(record))
        return
    record["config"] = config
    stand_in = keras.saving.serialize_keras_object(
        SparseModelFile(name=model.name)
    )
    stand_in["config"]["model"] = model.name
    _rewrite_archive(
        filepath,
        {"config.json": json.dumps(stand_in), _ENTRY: json.dumps(record)},
    )


def _confirm_overwrite(filepath):
    """Asks at the terminal whether to replace `filepath`, as Keras's own
    `save_model(overwrite=False)` does; without a terminal (where Keras's
    prompt dies with an EOFError) raises a clear error instead."""
    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        raise FileExistsError(
            f"tfs.save: '{filepath}' already exists and overwrite=False, and "
            "there is no terminal to ask whether to replace it. Pass "
            "overwrite=True, or save to a new path."
        )
    answer = ""
    while answer not in ("y", "n"):
        answer = input(f"'{filepath}' already exists - overwrite? [y/n] ").strip().lower()
    return answer == "y"


def _rewrite_archive(filepath, replaced):
    """Rewrites a zip archive with some entries replaced or added."""
    temporary = filepath + ".tmp"
    with zipfile.ZipFile(filepath) as source, zipfile.ZipFile(
        temporary, "w", compression=zipfile.ZIP_DEFLATED
    ) as target:
        for item in source.infolist():
            if item.filename not in replaced:
                target.writestr(item, source.read(item.filename))
        for name, text in replaced.items():
            target.writestr(name, text)
    os.replace(temporary, filepath)


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
    if record.get("version") not in (1, 2, _FORMAT_VERSION):
        raise ValueError(
            f"'{filepath}' was written by a newer tf_sparsity "
            f"(format {record.get('version')})."
        )
    config = record.get("config", config)
    compile_config = config.pop("compile_config", None)
    with keras.saving.custom_object_scope(custom_objects or {}):
        try:
            model = keras.saving.deserialize_keras_object(config, safe_mode=safe_mode)
        except Exception as error:  # Keras raises many types here.
            raise ValueError(
                f"Cannot rebuild the model saved in '{filepath}' from its "
                f"config: {type(error).__name__}: {error}\nImport or define "
                "its classes first (or pass them as `custom_objects`)."
            ) from error
        model = rewrap(model, record["wrappers"], record["version"])
        if compile and compile_config:
            model.compile_from_config(compile_config)
    model.load_weights(filepath)
    return model


def rewrap(model, records, version=_FORMAT_VERSION):
    """Wraps again the layers at the key paths listed in `records` (those the
    config already rebuilt as wrappers are left as they are).

    Args:
        model: the model rebuilt from its config.
        records: the wrapper records of the file.
        version: the file's format version (older key paths are translated).

    Raises:
        ValueError: a key path reaches no layer of `model` (nothing is
            changed then).
    """
    wanted, missing = {}, []
    for record in records:
        key_path = read_key_path(record["key_path"], version)
        layer = tree.layer_at(model, key_path)
        if layer is None:
            missing.append(key_path)
        elif not is_sparse(layer):
            wanted[id(layer)] = record
    if missing:
        hint = ""
        tracked = any(step[0] == "tracked" for path in missing for step in path)
        if version < 3 and tracked:
            hint = (
                " Files of format 1 and 2 recorded layers in nested lists, "
                "tuples or dicts as 'tracked' steps, and such models computed "
                "with the dense layers despite their wrappers: sparsify the "
                "model again instead of loading it."
            )
        raise ValueError(
            "The rebuilt model has no layer at "
            f"{', '.join(str([list(step) for step in path]) for path in missing)}; "
            f"was it saved from a different version of its code?{hint}"
        )

    def wrap(layer, key_path, name_path):
        record = wanted.pop(id(layer), None)
        if record is None:
            return None
        method = keras.saving.deserialize_keras_object(record["method"])
        return SparseWrapper(layer, method, target_sparsity=record["target_sparsity"])

    tree.transform(model, wrap, stop=is_sparse)
    if wanted:
        raise ValueError(
            f"Could not wrap {len(wanted)} layer(s) of the rebuilt model "
            "again: they are held only inside other sparse layers."
        )
    return model


# Formats 1 and 2 written on TensorFlow spell an attribute step as an entry
# of TensorFlow's own record of a layer's attributes.
_TENSORFLOW_ATTRIBUTE_RECORD = "_self_unconditional_dependency_names"


def read_key_path(steps, version=_FORMAT_VERSION):
    """A key path read from a file, as a tuple of tuples in today's spelling.

    Files of format 1 and 2 written on TensorFlow spell attribute steps
    `["item", "_self_unconditional_dependency_names", name]`; they are read
    as `["attr", name]`, as every backend writes them now.
    """
    key_path = []
    for step in steps:
        step = tuple(step)
        if version < 3 and step[:2] == ("item", _TENSORFLOW_ATTRIBUTE_RECORD):
            step = ("attr",) + step[2:]
        key_path.append(step)
    return tuple(key_path)
