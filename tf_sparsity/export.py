"""`export_saved_model()`: a stripped SavedModel for TF Serving."""

import os
import shutil

from tf_sparsity import _backend
from tf_sparsity.strip import check_model
from tf_sparsity.strip import folded
from tf_sparsity.strip import warn_if_never_pruned


def export_saved_model(
    model, export_dir, input_signature=None, strip=True, overwrite=False
):
    """Writes `model` as a TensorFlow SavedModel for TF Serving.

    With `strip=True` the SavedModel holds plain layers with zeros in the
    pruned positions: no mask ops, no tf_sparsity code needed to load or
    serve it. It is traced from the live model with its wrappers removed and
    the sparse kernels folded in for the duration of the export (then
    restored exactly), so it works for any model `sparsify` accepts, also
    ones whose config cannot rebuild them. The SavedModel has `serve` and
    `serving_default` signatures. For TF Serving, write into a numbered
    version directory (e.g. `export/1`).

    Args:
        model: a sparse (or plain) Keras model.
        export_dir: output directory; it must not exist yet, or be empty,
            unless `overwrite=True`.
        input_signature: optional list of `keras.InputSpec`/`tf.TensorSpec`
            (needed for subclassed models that never saw their input shape).
        strip: fold the sparse kernels in and leave the wrappers out
            (default True).
        overwrite: replace an existing `export_dir` (the old export stays
            until the new one is written).
    """
    check_model(model, "export_saved_model")
    _backend.require_tensorflow("SavedModel export")
    export_dir = os.fspath(export_dir)
    replacing = _check_directory(export_dir, overwrite)
    # Replacing: the old export stays until the new one is complete.
    target = export_dir + ".partial" if replacing else export_dir
    if strip:
        warn_if_never_pruned(model, "export_saved_model")
        with folded(model):
            _export(model, target, input_signature)
    else:
        _export(model, target, input_signature)
    if replacing:
        shutil.rmtree(export_dir)
        os.replace(target, export_dir)


def _export(model, export_dir, input_signature):
    shutil.rmtree(export_dir, ignore_errors=True)  # A partial one left by a crash.
    model.export(
        export_dir,
        format="tf_saved_model",
        input_signature=input_signature,
        verbose=False,
    )


def _check_directory(export_dir, overwrite):
    """Checks the export path; returns whether an old export is replaced."""
    if os.path.isfile(export_dir):
        raise ValueError(
            f"Export path '{export_dir}' is a file; a SavedModel is a directory."
        )
    if os.path.isdir(export_dir) and os.listdir(export_dir):
        if not overwrite:
            raise FileExistsError(
                f"Export directory '{export_dir}' already exists and is not "
                "empty. Export to a new version directory (e.g. export/2), "
                "or pass overwrite=True to replace it."
            )
        return True
    parent = os.path.dirname(os.path.abspath(export_dir))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"Cannot export under '{parent}': it is a file.")
    os.makedirs(parent, exist_ok=True)
    return False
