"""ImageNet (or any TFDS image classification dataset) input pipelines.

Preprocessing follows the paper's reference code (`state_of_sparsity/
sparse_rn50/resnet_preprocessing.py`, the Cloud TPU ResNet's):

- training: an Inception-style random crop (10% to 100% of the area, aspect
  ratio 3/4 to 4/3, from `tf.image.sample_distorted_bounding_box`; the centre
  crop when no crop was found in 10 attempts), resized to the image size,
  then a random horizontal flip;
- evaluation: the central `image_size / (image_size + 32)` of the shorter
  side (224/256 at 224), resized to the image size;
- both: bicubic resizing (clipped back to 0-255, since bicubic overshoots
  at sharp edges), then normalization by the ImageNet mean and standard
  deviation.

JPEG datasets (ImageNet) are read undecoded and cropped while decoding with
`tf.image.decode_and_crop_jpeg`, which only decodes the crop window.

Each pipeline is a function of a `tf.distribute.InputContext`, for
`strategy.distribute_datasets_from_function`: every input pipeline (one per
worker) reads its own share of the files and batches the per-replica batch,
so the global batch is `batch_size` whatever the number of replicas.
"""

import dataclasses
import os

import tensorflow as tf

from tf_sparsity_models.common import tfds_data

IMAGENET = "imagenet2012"
IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_EVAL_EXAMPLES = 50_000
IMAGENET_CLASSES = 1000

# ImageNet statistics on the 0-255 scale (the reference code's MEAN_RGB and
# STDDEV_RGB).
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
#: Evaluation crops image_size / (image_size + CROP_PADDING) of the image.
CROP_PADDING = 32

_AREA_RANGE = (0.08, 1.0)
_ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
_MIN_OBJECT_COVERED = 0.1
_MAX_CROP_ATTEMPTS = 10
_IMAGENET_HINT = (
    " (ImageNet is prepared from ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar: put them in a folder and pass --manual_dir "
    "FOLDER, or point --data_dir at a prepared TFDS directory)"
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What training needs to know about a dataset.

    Attributes:
        name: the TFDS name ("imagenet2012", "cifar10", ...), or
            "synthetic".
        num_classes: number of labels.
        train_examples: size of the training split (for epochs in the
            learning-rate schedule).
        eval_examples: size of the evaluation split, or None if unknown.
        train_split: the TFDS split trained on.
        eval_split: the TFDS split evaluated on.
        jpeg: whether images are stored as JPEG (cropped while decoding).
    """

    name: str
    num_classes: int
    train_examples: int
    eval_examples: object
    train_split: str = "train"
    eval_split: str = "validation"
    jpeg: bool = True


def normalize(images):
    """Scales RGB pixel values (0-255) by the ImageNet mean and std.

    Args:
        images: float tensor `(..., 3)` of pixel values in [0, 255].

    Returns:
        A float32 tensor of the same shape, about zero mean, unit variance.
    """
    images = tf.cast(images, tf.float32)
    mean = tf.constant(MEAN_RGB, shape=[3], dtype=tf.float32)
    stddev = tf.constant(STDDEV_RGB, shape=[3], dtype=tf.float32)
    return (images - mean) / stddev


def image_shape(image, jpeg):
    """`[height, width, channels]` of an encoded JPEG or a decoded image."""
    if jpeg:
        return tf.image.extract_jpeg_shape(image)
    return tf.shape(image)


def random_crop_window(shape, seed=1):
    """An Inception-style random crop window `[y, x, height, width]`.

    Falls back to the central crop (as the reference code does) when
    `sample_distorted_bounding_box` found no window and returned the whole
    image.

    Args:
        shape: int tensor `[height, width, channels]` of the image.
        seed: the op's seed: with the global seed (`keras.utils.
            set_random_seed`) it fixes the sequence of crops. Not 0: the
            op then draws from an unseeded source, which TensorFlow's op
            determinism refuses.

    Returns:
        int32 tensor `[offset_y, offset_x, crop_height, crop_width]`.
    """
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=_MIN_OBJECT_COVERED,
        aspect_ratio_range=_ASPECT_RATIO_RANGE,
        area_range=_AREA_RANGE,
        max_attempts=_MAX_CROP_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
        seed=seed,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    whole_image = tf.reduce_all(tf.equal(size[:2], shape[:2]))
    return tf.cond(
        whole_image,
        lambda: center_crop_window(shape, 1.0),
        lambda: window,
    )


def center_crop_window(shape, fraction):
    """The central square crop window covering `fraction` of the short side.

    Args:
        shape: int tensor `[height, width, channels]` of the image.
        fraction: the side of the crop over the image's shorter side.

    Returns:
        int32 tensor `[offset_y, offset_x, crop_height, crop_width]`.
    """
    height, width = shape[0], shape[1]
    shorter = tf.cast(tf.minimum(height, width), tf.float32)
    side = tf.cast(fraction * shorter, tf.int32)
    offset_y = (height - side + 1) // 2
    offset_x = (width - side + 1) // 2
    return tf.stack([offset_y, offset_x, side, side])


def crop(image, window, jpeg):
    """Crops `window` out of an encoded JPEG (decoding only the window) or
    out of a decoded image. Returns uint8 `(crop_height, crop_width, 3)`."""
    if jpeg:
        return tf.image.decode_and_crop_jpeg(image, window, channels=3)
    cropped = tf.image.crop_to_bounding_box(
        image, window[0], window[1], window[2], window[3]
    )
    return _to_rgb(cropped)


def resize(image, image_size):
    """Bicubic resize to `(image_size, image_size, 3)` float32 (0-255)."""
    image = tf.image.resize(
        tf.cast(image, tf.float32), [image_size, image_size], method="bicubic"
    )
    # Bicubic interpolation overshoots at sharp edges; clip so that inputs
    # stay in the pixel range the normalization statistics describe.
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([image_size, image_size, 3])
    return image


def preprocess_for_train(image, image_size, jpeg=True):
    """Random crop, resize, random flip, normalize.

    Args:
        image: an encoded JPEG string (`jpeg=True`) or a uint8 image
            `(height, width, channels)`.
        image_size: output height and width.
        jpeg: how `image` is given.

    Returns:
        float32 `(image_size, image_size, 3)`, normalized.
    """
    window = random_crop_window(image_shape(image, jpeg))
    image = resize(crop(image, window, jpeg), image_size)
    image = tf.image.random_flip_left_right(image)
    return normalize(image)


def preprocess_for_eval(image, image_size, jpeg=True):
    """Central crop (224/256 of the short side at 224), resize, normalize.

    Args:
        image: an encoded JPEG string (`jpeg=True`) or a uint8 image.
        image_size: output height and width.
        jpeg: how `image` is given.

    Returns:
        float32 `(image_size, image_size, 3)`, normalized.
    """
    fraction = image_size / (image_size + CROP_PADDING)
    window = center_crop_window(image_shape(image, jpeg), fraction)
    return normalize(resize(crop(image, window, jpeg), image_size))


def preprocess_encoded_for_eval(encoded, image_size):
    """Eval preprocessing of any encoded image (JPEG, PNG, GIF, BMP).

    Used by the serving signature, whose clients may send any format.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return preprocess_for_eval(image, image_size, jpeg=False)


def _to_rgb(image):
    """Grayscale images (MNIST-like datasets) become 3-channel."""
    # TFDS image features have a static channel count.
    if image.shape[-1] == 1:
        return tf.image.grayscale_to_rgb(image)
    return image[..., :3]


class TFDSImages:
    """A TFDS image classification dataset, ready to be read in shards.

    Args:
        name: the TFDS name, e.g. "imagenet2012" or "cifar10".
        data_dir: the TFDS data directory (None: TFDS's default).
        manual_dir: where manually downloaded files are (ImageNet's
            ILSVRC2012 tars), used only if the dataset is not prepared yet.
        eval_split: the split to evaluate on; None picks "validation" if the
            dataset has one, else "test".

    Raises:
        ValueError: unknown dataset, missing `data_dir`/`manual_dir`, or a
            dataset that cannot be prepared (e.g. ImageNet without its tars).
    """

    def __init__(self, name, data_dir=None, manual_dir=None, eval_split=None):
        self.builder = tfds_data.open_builder(
            name, data_dir, manual_dir, hint=_IMAGENET_HINT if name == IMAGENET else ""
        )
        features = self.builder.info.features
        if self.builder.info.supervised_keys is None:
            raise ValueError(f"dataset {name!r} has no (image, label) keys")
        self.image_key, self.label_key = self.builder.info.supervised_keys[:2]
        image_feature = features[self.image_key]
        if not hasattr(image_feature, "encoding_format"):
            raise ValueError(f"dataset {name!r} is not an image dataset")
        splits = self.builder.info.splits
        if eval_split is None:
            has_test_only = "validation" not in splits and "test" in splits
            eval_split = "test" if has_test_only else "validation"
        self.info = DatasetInfo(
            name=name,
            num_classes=int(features[self.label_key].num_classes),
            train_examples=tfds_data.split_size(splits, "train")
            or (IMAGENET_TRAIN_EXAMPLES if name == IMAGENET else None),
            eval_examples=tfds_data.split_size(splits, eval_split)
            or (IMAGENET_EVAL_EXAMPLES if name == IMAGENET else None),
            eval_split=eval_split,
            jpeg=image_feature.encoding_format == "jpeg",
        )

    def _preprocess(self, dataset, preprocess, image_size):
        """Maps `(image, label)` to `(preprocess(image), one_hot(label))`."""
        return dataset.map(
            lambda image, label: (
                preprocess(image, image_size, self.info.jpeg),
                tf.one_hot(label, self.info.num_classes),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def _read(self, split, input_context, training, seed):
        decoders = None
        if self.info.jpeg:
            tfds = tfds_data.import_tfds()
            decoders = {self.image_key: tfds.decode.SkipDecoding()}
        dataset = tfds_data.read(self.builder, split, input_context, training, seed, decoders)
        return dataset.map(
            lambda example: (example[self.image_key], example[self.label_key])
        )

    def train_dataset_fn(self, global_batch_size, image_size, shuffle_seed=0,
                         shuffle_buffer=10_000, skip_steps=0, deterministic=False):
        """The training pipeline, as a function of an `InputContext`.

        Args:
            global_batch_size: the batch over all replicas.
            image_size: output image height and width.
            shuffle_seed: seed of the file order and the shuffle buffer.
            shuffle_buffer: examples in the shuffle buffer.
            skip_steps: training steps already done, whose batches are
                skipped (after augmentation, so that the random crops of
                later examples are those of an uninterrupted run).
            deterministic: produce elements in order (parallel map calls
                otherwise hand over whichever finishes first).

        Returns:
            A function `input_context -> tf.data.Dataset` of infinitely
            repeated `(images, one_hot_labels)` batches of the per-replica
            size: images float32 `(batch, image_size, image_size, 3)`,
            labels float32 `(batch, num_classes)`.
        """

        def dataset_fn(input_context=None):
            batch_size = tfds_data.per_replica_batch(input_context, global_batch_size)
            dataset = self._read(
                self.info.train_split, input_context, True, shuffle_seed
            )
            dataset = dataset.shuffle(shuffle_buffer, seed=shuffle_seed).repeat()
            dataset = self._preprocess(dataset, preprocess_for_train, image_size)
            # Static batch shapes: needed on TPU, harmless elsewhere.
            dataset = dataset.batch(batch_size, drop_remainder=True)
            dataset = tfds_data.skip_steps(dataset, input_context, skip_steps)
            return tfds_data.finish(dataset, deterministic=deterministic)

        return dataset_fn

    def eval_dataset_fn(self, global_batch_size, image_size, drop_remainder=False,
                        repeat=False):
        """The evaluation pipeline, as a function of an `InputContext`.

        Args:
            global_batch_size: the batch over all replicas.
            image_size: output image height and width.
            drop_remainder: drop the last partial batch (TPUs need static
                shapes).
            repeat: repeat forever (when evaluation runs a fixed number of
                steps on several workers, so no worker runs out first).

        Returns:
            A function `input_context -> tf.data.Dataset` of `(images,
            one_hot_labels)` batches, as for training, in file order.
        """

        def dataset_fn(input_context=None):
            batch_size = tfds_data.per_replica_batch(input_context, global_batch_size)
            dataset = self._read(self.info.eval_split, input_context, False, None)
            dataset = self._preprocess(dataset, preprocess_for_eval, image_size)
            dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
            if repeat:
                dataset = dataset.repeat()
            return tfds_data.finish(dataset, deterministic=True)

        return dataset_fn


class SyntheticImages:
    """Random images and labels of the right shapes, for throughput runs and
    smoke tests.

    Every input pipeline repeats one random batch (computed once and cached),
    so the input pipeline costs nothing and training is deterministic however
    often it is interrupted and resumed.

    Args:
        num_classes: number of labels.
        seed: seed of the random batch.
    """

    def __init__(self, num_classes=IMAGENET_CLASSES, seed=0):
        self.seed = seed
        self.info = DatasetInfo(
            name="synthetic",
            num_classes=num_classes,
            train_examples=IMAGENET_TRAIN_EXAMPLES,
            eval_examples=None,
            jpeg=False,
        )

    def _dataset_fn(self, global_batch_size, image_size, stream):
        num_classes = self.info.num_classes

        def dataset_fn(input_context=None):
            batch_size = tfds_data.per_replica_batch(input_context, global_batch_size)
            pipeline = input_context.input_pipeline_id if input_context else 0
            # Distinct random streams per split (`stream`), input pipeline
            # and tensor (images, labels).
            offset = 4 * pipeline + 2 * stream
            image_seed = tf.constant([self.seed, offset], dtype=tf.int64)
            label_seed = tf.constant([self.seed, offset + 1], dtype=tf.int64)

            def random_batch(_):
                images = tf.random.stateless_normal(
                    [batch_size, image_size, image_size, 3], seed=image_seed
                )
                labels = tf.random.stateless_uniform(
                    [batch_size], seed=label_seed, maxval=num_classes,
                    dtype=tf.int64,
                )
                return images, tf.one_hot(labels, num_classes)

            dataset = tf.data.Dataset.range(1).map(random_batch).cache()
            return tfds_data.finish(dataset.repeat(), deterministic=True)

        return dataset_fn

    def train_dataset_fn(self, global_batch_size, image_size, **unused):
        """Like `TFDSImages.train_dataset_fn`: one repeated random batch,
        the same however often the run is resumed (nothing to skip)."""
        return self._dataset_fn(global_batch_size, image_size, stream=0)

    def eval_dataset_fn(self, global_batch_size, image_size, **unused):
        """Another random batch, repeated forever: evaluate it for a fixed
        number of steps."""
        return self._dataset_fn(global_batch_size, image_size, stream=1)


def load(name, data_dir=None, manual_dir=None, eval_split=None,
         synthetic=False, num_classes=None, seed=0):
    """The dataset to train on: a `TFDSImages` or `SyntheticImages`.

    Args:
        name: the TFDS name; with `synthetic=True` it only sets the default
            number of classes (ImageNet's 1000).
        data_dir: the TFDS data directory.
        manual_dir: where manually downloaded files are.
        eval_split: the split to evaluate on (None: validation, else test).
        synthetic: random data instead of `name`.
        num_classes: for synthetic data, the number of labels (None: 1000).
        seed: for synthetic data, the seed of the random batches.

    Returns:
        An object with `info`, `train_dataset_fn` and `eval_dataset_fn`.
    """
    if synthetic:
        return SyntheticImages(num_classes or IMAGENET_CLASSES, seed)
    if data_dir is not None:
        data_dir = os.path.expanduser(data_dir)
    if manual_dir is not None:
        manual_dir = os.path.expanduser(manual_dir)
    return TFDSImages(name, data_dir, manual_dir, eval_split)
