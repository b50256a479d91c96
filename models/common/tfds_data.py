"""Reading TFDS datasets for training: preparing a builder, reading a split
sharded per input pipeline, batching per replica. What is specific to a
task (its features and preprocessing) stays in the task's folder."""

import tensorflow as tf


def import_tfds():
    # Only real datasets need TFDS; synthetic-data runs do not.
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            "reading a dataset needs tensorflow-datasets (pip install "
            "tensorflow-datasets), or train on --synthetic_data"
        ) from None
    return tfds


def open_builder(name, data_dir=None, manual_dir=None, hint=""):
    """The prepared TFDS builder of `name` (prepared now if it is not yet).

    Args:
        name: the TFDS name, e.g. "imagenet2012".
        data_dir: the TFDS data directory (None: TFDS's default).
        manual_dir: where manually downloaded files are, used only to
            prepare the dataset.
        hint: appended to the error when preparing fails (how to get the
            files).

    Raises:
        ValueError: a missing directory, an unknown name, or a dataset that
            cannot be prepared.
    """
    tfds = import_tfds()
    for flag, path in (("data_dir", data_dir), ("manual_dir", manual_dir)):
        if path is not None and not tf.io.gfile.isdir(path):
            raise ValueError(f"--{flag} {path} does not exist")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown dataset {name!r}: not a TFDS dataset name "
            "(see https://www.tensorflow.org/datasets/catalog)"
        ) from None
    if builder.is_prepared():
        return builder
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as error:  # Reported as one line by the CLI.
        message = str(error).strip().splitlines()
        raise ValueError(
            f"dataset {name!r} is not prepared in {builder.data_dir} and "
            f"could not be prepared: "
            f"{message[0] if message else type(error).__name__}{hint}"
        ) from None
    return builder


def read(builder, split, input_context, training, seed, decoders=None):
    """One split as a `tf.data.Dataset` of examples.

    Sharded by files: each input pipeline (one per worker) reads its own
    files, instead of every worker reading everything.
    """
    tfds = import_tfds()
    shard = input_context is not None and input_context.num_input_pipelines > 1
    read_config = tfds.ReadConfig(
        input_context=input_context if shard else None,
        shuffle_seed=seed,
    )
    return builder.as_dataset(
        split=split,
        shuffle_files=training,
        decoders=decoders,
        read_config=read_config,
    )


def per_replica_batch(input_context, global_batch_size):
    if input_context is None:
        return global_batch_size
    return input_context.get_per_replica_batch_size(global_batch_size)


def skip_steps(dataset, input_context, steps):
    """`dataset` (one input pipeline's per-replica batches) without the
    batches of the first `steps` training steps: each step takes one batch
    for each replica the pipeline feeds."""
    if not steps:
        return dataset
    replicas = 1
    if input_context is not None:
        replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    return dataset.skip(steps * replicas)


def finish(dataset, deterministic):
    """Prefetches; training order need not be reproducible, so fast
    elements may go first there."""
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def split_size(splits, name):
    """Examples in split `name`, or None when unknown."""
    try:
        return int(splits[name].num_examples) or None
    except (KeyError, ValueError, TypeError):
        return None
