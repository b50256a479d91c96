"""`export_saved_model()`: a stripped SavedModel for TF Serving."""

import os

from tf_sparsity import _backend
from tf_sparsity import strip as strip_lib


def export_saved_model(model, export_dir, input_signature=None, strip=True):
    """Writes `model` as a TensorFlow SavedModel for TF Serving.

    The sparse wrappers are stripped first (`tfs.strip`), so the SavedModel
    holds plain layers with zeros in the pruned positions: no mask ops, no
    tf_sparsity code needed to load or serve it. The SavedModel has `serve`
    and `serving_default` signatures. For TF Serving, write into a numbered
    version directory (e.g. `export/1`).

    Args:
        model: a sparse (or plain) Keras model.
        export_dir: output directory.
        input_signature: optional list of `keras.InputSpec`/`tf.TensorSpec`
            (needed for subclassed models that never saw their input shape).
        strip: strip wrappers before exporting (default True).

    Returns:
        The exported (stripped) Keras model.
    """
    _backend.require_tensorflow("SavedModel export")
    plain = strip_lib.strip(model) if strip else model
    os.makedirs(os.path.dirname(os.path.abspath(export_dir)), exist_ok=True)
    plain.export(
        export_dir,
        format="tf_saved_model",
        input_signature=input_signature,
        verbose=False,
    )
    return plain
