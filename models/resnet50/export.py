"""Exporting a trained sparse ResNet for TF Serving.

The SavedModel holds the stripped model (`tfs.strip`: plain Keras layers,
pruned weights folded in as zeros, no tf_sparsity code needed to serve it),
or, for runs that prune whole filters (`--structure units`), the shrunk
model (`tfs.shrink`: fewer filters, faster everywhere), with two endpoints:

- `serving_default` (also named `serve_encoded`): a batch of encoded images,
  a string tensor `(batch,)` of JPEG (or PNG, GIF, BMP) bytes, decoded,
  centre-cropped, resized and normalized inside the graph exactly as in
  evaluation. This is what a TF Serving REST client sends as
  `{"instances": [{"b64": "..."}]}`.
- `serve`: a float32 batch `(batch, image_size, image_size, 3)` already
  preprocessed (`data.preprocess_for_eval`).

Both return `logits` `(batch, num_classes)`, `probabilities` (softmax) and
`classes` (int64 argmax).
"""

import keras
import tensorflow as tf

import tf_sparsity as tfs
from tf_sparsity_models.resnet50 import data as data_lib

ENCODED_ENDPOINT = "serve_encoded"
IMAGES_ENDPOINT = "serve"


def _predictions(logits):
    logits = tf.cast(logits, tf.float32)
    return {
        "logits": logits,
        "probabilities": tf.nn.softmax(logits),
        "classes": tf.argmax(logits, axis=-1),
    }


def prunes_units(model):
    """Whether `model` prunes whole units (`tfs.Units`, `tfs.Heads`): its
    export is then the physically smaller model `tfs.shrink` builds."""
    return any(
        getattr(getattr(wrapper.method, "structure", None), "coupled_kind", None)
        for _, wrapper in tfs.sparse_layers(model)
    )


def export_for_serving(model, export_dir, image_size):
    """Strips `model` and writes it as a SavedModel with both endpoints.

    Args:
        model: the trained (sparse or dense) model; it is not modified.
        export_dir: output directory; for TF Serving, a numbered version
            directory such as `model_dir/export/1`.
        image_size: the model's input height and width.

    Returns:
        The stripped Keras model that was exported.
    """
    plain = tfs.shrink(model) if prunes_units(model) else tfs.strip(model)

    def serve_images(images):
        return _predictions(plain(images, training=False))

    def serve_encoded(encoded_images):
        images = tf.map_fn(
            lambda encoded: data_lib.preprocess_encoded_for_eval(
                encoded, image_size
            ),
            encoded_images,
            fn_output_signature=tf.TensorSpec(
                (image_size, image_size, 3), tf.float32
            ),
        )
        return serve_images(images)

    archive = keras.export.ExportArchive()
    archive.track(plain)
    # The first endpoint added also becomes "serving_default".
    archive.add_endpoint(
        ENCODED_ENDPOINT,
        serve_encoded,
        input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
    )
    archive.add_endpoint(
        IMAGES_ENDPOINT,
        serve_images,
        input_signature=[
            tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name="images")
        ],
    )
    archive.write_out(export_dir, verbose=False)
    return plain
