"""`save_masks()` / `load_masks()`: a trained model's masks, to seed new runs
(the lottery-ticket and train-from-scratch experiments).

A mask file is a compressed NumPy archive (`.npz`): one boolean array per
sparse kernel, keyed by the layer's path and the kernel's name
("block_1/conv/kernel"), and a JSON entry describing each kernel (shape,
sparsity), the method and the run the masks came from. It is read without
pickle and without TensorFlow, on any backend.
"""

import json
import os
import zipfile
import zlib

import numpy as np
from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity import optimizer_state
from tf_sparsity.methods.base import MaskedMethod
from tf_sparsity.sparsify import sparse_kernels

_META = "__tf_sparsity_masks__"
_FORMAT_VERSION = 1


def _masked_kernels(model, caller):
    """`{key: SparseKernel}` of every masked kernel of `model`."""
    found, unmasked = {}, []
    for kernel in sparse_kernels(model):
        if not isinstance(kernel.method, MaskedMethod):
            entry = f"{kernel.layer_path} ({type(kernel.method).__name__})"
            if entry not in unmasked:
                unmasked.append(entry)
            continue
        found[kernel.path] = kernel
    if unmasked:
        raise ValueError(
            f"{caller}: layers {', '.join(unmasked)} have no masks (their "
            "sparsity is learned, not masked); use a pruning method or "
            "tfs.FixedMask()."
        )
    if not found:
        raise ValueError(
            f"{caller}: model '{model.name}' has no sparse layer; sparsify it "
            "first (e.g. tfs.sparsify(model, tfs.FixedMask()))."
        )
    return found


def save_masks(model, path, run=None):
    """Writes every sparse kernel's mask of `model` to `path` (`.npz`).

    Args:
        model: a sparse model whose method keeps masks (magnitude or random
            pruning, `FixedMask`).
        path: the file to write (".npz" is added if missing).
        run: optional JSON-friendly description of the run the masks come
            from (e.g. its model directory and result row's key fields).

    Returns:
        The path written.
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays, kernels = {}, {}
    methods = set()
    for key, kernel in _masked_kernels(model, "save_masks").items():
        mask = ops.convert_to_numpy(kernel.state.mask) > 0.5
        arrays[key] = mask
        kernels[key] = {
            "shape": list(mask.shape),
            "sparsity": float(1.0 - mask.mean()) if mask.size else 0.0,
        }
        methods.add(type(kernel.method).__name__)
    meta = {
        "format": _FORMAT_VERSION,
        "model": model.name,
        "method": sorted(methods),
        "run": run,
        "kernels": kernels,
    }
    arrays[_META] = np.array(json.dumps(meta))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _existing_path(path):
    """`path`, or `path + ".npz"` where only that exists (`save_masks` adds
    the suffix, so the name given to it finds the file again)."""
    path = os.fspath(path)
    if not os.path.exists(path) and not path.endswith(".npz"):
        if os.path.exists(path + ".npz"):
            return path + ".npz"
        raise FileNotFoundError(f"No such mask file: '{path}' (nor '{path}.npz').")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such mask file: '{path}'.")
    return path


def read_masks(path):
    """`(masks, meta)` of a mask file: `{key: bool array}` and its JSON
    description (kernels with shape and sparsity, method, run).

    Args:
        path: a file written by `save_masks`; the name given to
            `save_masks` works too (".npz" is added when only that exists).
    """
    path = _existing_path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if _META not in data.files:
                raise ValueError("no tf_sparsity description in it")
            meta = json.loads(str(data[_META]))
            masks = {key: data[key] for key in data.files if key != _META}
    # A truncated or corrupt archive raises any of these from `zipfile`.
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"'{path}' is not a tf_sparsity mask file (truncated or not "
            f"written by save_masks?): {type(error).__name__}: {error}"
        ) from None
    return masks, meta


def load_masks(model, path, shuffle_seed=None):
    """Loads the masks in `path` into the sparse kernels of `model`.

    `model` must be sparsified with the same architecture (layer paths and
    kernel shapes) and a method that keeps masks, usually `tfs.FixedMask()`.

    Args:
        model: the sparse model.
        path: a file written by `save_masks` (or the name given to it).
        shuffle_seed: if given, a non-negative int: each kernel gets a
            random mask with exactly the saved mask's number of zeros (the
            learned per-layer sparsities without the learned positions),
            drawn from this seed and the kernel's key.

    Returns:
        The file's description (see `read_masks`).

    Raises:
        ValueError: one error naming every kernel missing from the file,
            every extra kernel in it, every shape that differs and every
            mask holding values other than 0 and 1.
    """
    if shuffle_seed is not None:
        shuffle_seed = validate.integer("load_masks", "shuffle_seed", shuffle_seed, minimum=0)
    masks, meta = read_masks(path)
    targets = _masked_kernels(model, "load_masks")
    missing = sorted(set(targets) - set(masks))
    extra = sorted(set(masks) - set(targets))
    mismatched = [
        f"{key} (model {targets[key].shape}, file {masks[key].shape})"
        for key in sorted(set(targets) & set(masks))
        if targets[key].shape != masks[key].shape
    ]
    # A mask scales its kernel: anything but 0 and 1 would silently train
    # and export a different model.
    not_binary = [
        f"{key} ({masks[key].dtype})"
        for key in sorted(set(targets) & set(masks))
        if masks[key].dtype != bool and not np.isin(masks[key], (0, 1)).all()
    ]
    problems = []
    if not_binary:
        problems.append(f"masks with values other than 0 and 1: {', '.join(not_binary)}")
    if missing:
        problems.append(f"not in the file: {', '.join(missing)}")
    if extra:
        problems.append(f"not in the model: {', '.join(extra)}")
    if mismatched:
        problems.append(f"shapes differ: {', '.join(mismatched)}")
    if problems:
        raise ValueError(
            f"Masks in '{os.fspath(path)}' do not fit model '{model.name}': "
            + "; ".join(problems) + "."
        )
    slots = None
    for key, kernel in targets.items():
        mask = masks[key]
        if shuffle_seed is not None:
            rng = np.random.default_rng([shuffle_seed, zlib.crc32(key.encode())])
            mask = rng.permutation(mask.reshape(-1)).reshape(mask.shape)
        variable = kernel.state.mask
        variable.assign(mask.astype(variable.dtype))
        if kernel.wrapper.masked_zeros_kept:
            # Training computes with the variable as it is: zero it where
            # the new mask is.
            if slots is None:
                slots = optimizer_state.optimizer_slots(model)
            kernel.method.keep_masked_zeros(kernel, slots.get(id(kernel.variable), ()))
    return meta
