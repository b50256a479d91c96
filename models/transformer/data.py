"""Translation input pipelines: WMT14 from TFDS (or synthetic token batches).

Training pairs are tokenized in the graph with the run's SentencePiece
vocabulary, end with `EOS_ID`, are dropped when longer than `max_length`
(as tensor2tensor does in training), shuffled, bucketed by length and
batched by tokens: a bucket of sequences up to `L` tokens holds
`tokens_per_replica // L` pairs, padded to `L` (a few fixed shapes, so XLA
compiles a few programs, not one per batch). Each input pipeline reads its
own files (`tfds_data.read`). Elements are `({"source", "target"}, target,
weights)` with weights 0 on padding.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tf_sparsity_models.common import tfds_data
from tf_sparsity_models.transformer import vocab as vocab_lib
from tf_sparsity_models.transformer.vocab import add_eos
from tf_sparsity_models.transformer.model import EOS_ID
from tf_sparsity_models.transformer.model import PAD_ID

#: Bucket lengths beyond `max_length` used for evaluation (longer test
#: sentences are cut to the last one for the loss; BLEU decodes them whole).
EVAL_MAX_LENGTH = 256


@dataclasses.dataclass
class TranslationInfo:
    """What the rest of the run needs to know about the data.

    Attributes:
        name: the dataset's name.
        train_examples: sentence pairs in the training split (None: unknown).
        eval_examples: pairs in the evaluated split (None: unknown).
        vocabulary_size: size of the shared vocabulary.
        vocabulary_path: the SentencePiece model file (None: synthetic).
    """

    name: str
    train_examples: object
    eval_examples: object
    vocabulary_size: int
    vocabulary_path: object = None


def bucket_boundaries(max_length, minimum=8):
    """Bucket upper lengths: 8, 12, 16, 24, 32, 48, 64, ... up to
    `max_length` (always included)."""
    bounds, value = [], minimum
    while value < max_length:
        bounds.append(value)
        value = value + value // 2 if len(bounds) % 2 else value * 4 // 3
        value = max(value, bounds[-1] + 1)
    return bounds + [max_length]


def token_batches(dataset, tokens_per_batch, max_length, drop_remainder):
    """Buckets `(source, target)` pairs by length and batches them by tokens.

    Args:
        dataset: pairs of 1-D int32 tensors, none longer than `max_length`.
        tokens_per_batch: padded tokens per batch (per side).
        max_length: the longest sequence.
        drop_remainder: drop each bucket's last partial batch (for fixed
            shapes on TPU and in training).
    """
    bounds = bucket_boundaries(max_length)
    sizes = [max(tokens_per_batch // length, 1) for length in bounds]
    return dataset.bucket_by_sequence_length(
        element_length_func=lambda source, target: tf.maximum(
            tf.shape(source)[0], tf.shape(target)[0]
        ),
        # Bucket i holds lengths < boundary i, padded to boundary - 1: one
        # bucket per bound (the extra last bucket stays empty).
        bucket_boundaries=[b + 1 for b in bounds],
        bucket_batch_sizes=sizes + [sizes[-1]],
        padding_values=(PAD_ID, PAD_ID),
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )


def as_model_inputs(source, target):
    weights = tf.cast(tf.not_equal(target, PAD_ID), tf.float32)
    return {"source": source, "target": target}, target, weights


class _TokenizedTranslation:
    """Pipelines over sentence pairs tokenized with a SentencePiece model.

    Subclasses set `proto`, `tokenizer`, `info`, `source_key`, `target_key`
    and implement `_examples(split, input_context, training, seed)`, a
    dataset of dicts holding the two sentences under those keys.
    """

    def _use_vocabulary(self, path):
        self.codec = vocab_lib.Codec(vocab_lib.read(path))
        self.proto = self.codec.proto
        self.tokenizer = self.codec.tokenizer
        self.vocabulary_path = path

    def _tokenized(self, examples, max_length=None):
        def tokenize(batch):
            source = add_eos(self.tokenizer(batch[self.source_key]))
            target = add_eos(self.tokenizer(batch[self.target_key]))
            return source, target

        pairs = examples.batch(256).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        # Unbatched rows of a ragged batch are typed ragged: make them dense.
        pairs = pairs.map(lambda s, t: (tf.identity(s), tf.identity(t)))
        if max_length is not None:
            pairs = pairs.filter(
                lambda s, t: tf.logical_and(tf.size(s) <= max_length, tf.size(t) <= max_length)
            )
        return pairs

    def train_dataset_fn(self, tokens_per_batch, max_length, shuffle_seed, shuffle_buffer,
                         skip_steps=0, deterministic=False):
        """`fn(input_context)` for `distribute_datasets_from_function`,
        without the batches of the first `skip_steps` steps."""

        def dataset_fn(input_context=None):
            tokens = tfds_data.per_replica_batch(input_context, tokens_per_batch)
            examples = self._examples("train", input_context, True, shuffle_seed)
            pairs = self._tokenized(examples, max_length)
            pairs = pairs.shuffle(shuffle_buffer, seed=shuffle_seed).repeat()
            batches = token_batches(pairs, tokens, max_length, drop_remainder=True)
            batches = tfds_data.skip_steps(batches, input_context, skip_steps)
            return tfds_data.finish(batches.map(as_model_inputs), deterministic=deterministic)

        return dataset_fn

    def eval_dataset_fn(self, tokens_per_batch, repeat=False):
        """`fn(input_context)` for the evaluation loss (teacher forcing)."""

        def dataset_fn(input_context=None):
            tokens = tfds_data.per_replica_batch(input_context, tokens_per_batch)
            examples = self._examples(self.eval_split, input_context, False, 0)
            pairs = self._tokenized(examples).map(
                lambda s, t: (s[:EVAL_MAX_LENGTH], t[:EVAL_MAX_LENGTH])
            )
            if repeat:
                pairs = pairs.repeat()
            batches = token_batches(pairs, tokens, EVAL_MAX_LENGTH, drop_remainder=False)
            return tfds_data.finish(batches.map(as_model_inputs), deterministic=True)

        return dataset_fn

    def test_sentences(self, limit=None):
        """`(sources, references)`: the evaluated split's raw sentences."""
        examples = self._examples(self.eval_split, None, False, 0)
        if limit is not None:
            examples = examples.take(limit)
        sources, references = [], []
        for example in examples.as_numpy_iterator():
            sources.append(example[self.source_key].decode("utf-8"))
            references.append(example[self.target_key].decode("utf-8"))
        return sources, references

    def tokenize(self, sentences):
        """Token id lists (with EOS) of Python strings."""
        return self.codec.tokenize(sentences)

    def detokenize(self, token_lists):
        """Strings of token id lists (already cut at EOS)."""
        return self.codec.detokenize(token_lists)

    def _make_info(self, name, train_examples, eval_examples):
        self.info = TranslationInfo(
            name=name,
            train_examples=train_examples,
            eval_examples=eval_examples,
            vocabulary_size=int(self.tokenizer.vocabulary_size()),
            vocabulary_path=self.vocabulary_path,
        )


class TFDSTranslation(_TokenizedTranslation):
    """A TFDS translation dataset, tokenized with the run's vocabulary.

    Args:
        config: the run's `TransformerConfig`.
        model_dir: where a missing default vocabulary is built (`vocab.spm`).
        print_fn: where progress notes go.

    Raises:
        ValueError: a missing data directory or vocabulary, an unknown
            dataset, or languages the dataset does not have.
    """

    def __init__(self, config, model_dir, print_fn=print):
        data_dir = os.path.expanduser(config.data_dir) if config.data_dir else None
        self.builder = tfds_data.open_builder(config.dataset, data_dir)
        self.source_key = config.source_language
        self.target_key = config.target_language
        features = set(self.builder.info.features.keys())
        for flag, language in (
            ("source_language", config.source_language),
            ("target_language", config.target_language),
        ):
            if language not in features:
                raise ValueError(
                    f"--{flag} {language!r} is not a feature of {config.dataset} "
                    f"(it has: {', '.join(sorted(features))})"
                )
        splits = self.builder.info.splits
        if splits and config.eval_split not in splits:  # (Unknown under mock data.)
            raise ValueError(
                f"--eval_split {config.eval_split!r} is not a split of {config.dataset} "
                f"(it has: {', '.join(sorted(splits))})"
            )
        self.eval_split = config.eval_split
        path = config.vocabulary
        if path is not None:
            path = os.path.expanduser(path)
            if not tf.io.gfile.exists(path):
                raise ValueError(f"--vocabulary {path} does not exist")
        else:
            path = os.path.join(model_dir, vocab_lib.FILENAME)
            if not tf.io.gfile.exists(path):
                sentences, total = vocab_lib.vocabulary_text(
                    config.dataset, data_dir,
                    (config.source_language, config.target_language),
                    config.vocabulary_sentences, builder=self.builder,
                )
                print_fn(f"Building the vocabulary from {config.dataset} (train)")
                vocab_lib.build(sentences, path, config.vocabulary_size, total=total, print_fn=print_fn)
        self._use_vocabulary(path)
        self._make_info(
            config.dataset,
            tfds_data.split_size(splits, "train"),
            tfds_data.split_size(splits, config.eval_split),
        )

    def _examples(self, split, input_context, training, seed):
        return tfds_data.read(self.builder, split, input_context, training, seed)


class TextPairs(_TokenizedTranslation):
    """Sentence pairs held in memory (your own parallel text, or a toy task).

    Args:
        train_pairs: `(source, target)` string pairs to train on.
        test_pairs: pairs to evaluate on.
        vocabulary: a SentencePiece model file; built from `train_pairs`
            (with `vocabulary_size` pieces at most) when it does not exist.
        vocabulary_size: see `vocabulary`.
        name: the dataset's name in result rows.
    """

    source_key = "source"
    target_key = "target"
    eval_split = "test"

    def __init__(self, train_pairs, test_pairs, vocabulary, vocabulary_size=8000, name="text_pairs"):
        self.splits = {"train": list(train_pairs), "test": list(test_pairs)}
        if not tf.io.gfile.exists(vocabulary):
            text = (sentence for pair in self.splits["train"] for sentence in pair)
            vocab_lib.build(text, vocabulary, vocabulary_size, total=2 * len(self.splits["train"]))
        self._use_vocabulary(vocabulary)
        self._make_info(name, len(self.splits["train"]), len(self.splits["test"]))

    def _examples(self, split, input_context, training, seed):
        pairs = self.splits[split]
        dataset = tf.data.Dataset.from_tensor_slices(
            {
                "source": tf.constant([s for s, _ in pairs], tf.string),
                "target": tf.constant([t for _, t in pairs], tf.string),
            }
        )
        if input_context is not None and input_context.num_input_pipelines > 1:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return dataset


class SyntheticTranslation:
    """Random token batches (for throughput runs and smoke tests).

    Sources are random token ids; each target is the source with every id
    shifted by one (a rule a model can learn, so a short run's loss falls).
    "Sentences" are the ids written as words, so BLEU runs on them too.

    Args:
        vocabulary_size: ids are drawn from `[3, vocabulary_size)`.
        max_length: longest pair (EOS included).
        seed: seed of the random pairs.
    """

    EXAMPLES = 4096
    EVAL_EXAMPLES = 64

    def __init__(self, vocabulary_size, max_length, seed):
        if vocabulary_size < 5:
            raise ValueError(f"vocabulary_size {vocabulary_size} is too small for synthetic data")
        self.vocabulary_size = vocabulary_size
        self.max_length = max_length
        self.seed = seed
        self.info = TranslationInfo(
            name="synthetic",
            train_examples=self.EXAMPLES,
            eval_examples=self.EVAL_EXAMPLES,
            vocabulary_size=vocabulary_size,
        )

    def _pairs(self, count, seed):
        rng = np.random.default_rng(seed)
        pairs = []
        for _ in range(count):
            length = int(rng.integers(1, self.max_length))
            source = rng.integers(3, self.vocabulary_size, size=length)
            target = (source - 3 + 1) % (self.vocabulary_size - 3) + 3
            pairs.append((list(source) + [EOS_ID], list(target) + [EOS_ID]))
        return pairs

    def _dataset(self, pairs):
        def generate():
            for source, target in pairs:
                yield np.array(source, np.int32), np.array(target, np.int32)

        spec = tf.TensorSpec([None], tf.int32)
        return tf.data.Dataset.from_generator(generate, output_signature=(spec, spec))

    def train_dataset_fn(self, tokens_per_batch, max_length, shuffle_seed, shuffle_buffer,
                         skip_steps=0, deterministic=False):
        pairs = self._pairs(self.EXAMPLES, self.seed)

        def dataset_fn(input_context=None):
            tokens = tfds_data.per_replica_batch(input_context, tokens_per_batch)
            dataset = self._dataset(pairs).shuffle(len(pairs), seed=shuffle_seed).repeat()
            batches = token_batches(dataset, tokens, self.max_length, drop_remainder=True)
            batches = tfds_data.skip_steps(batches, input_context, skip_steps)
            return tfds_data.finish(batches.map(as_model_inputs), deterministic=deterministic)

        return dataset_fn

    def eval_dataset_fn(self, tokens_per_batch, repeat=False):
        pairs = self._pairs(self.EVAL_EXAMPLES, self.seed + 1)

        def dataset_fn(input_context=None):
            tokens = tfds_data.per_replica_batch(input_context, tokens_per_batch)
            dataset = self._dataset(pairs)
            if repeat:
                dataset = dataset.repeat()
            batches = token_batches(dataset, tokens, self.max_length, drop_remainder=False)
            return tfds_data.finish(batches.map(as_model_inputs), deterministic=True)

        return dataset_fn

    def test_sentences(self, limit=None):
        pairs = self._pairs(self.EVAL_EXAMPLES, self.seed + 1)[:limit]
        return (
            [" ".join(map(str, s[:-1])) for s, _ in pairs],
            [" ".join(map(str, t[:-1])) for _, t in pairs],
        )

    def tokenize(self, sentences):
        return [[int(w) for w in s.split()] + [EOS_ID] for s in sentences]

    def detokenize(self, token_lists):
        return [" ".join(map(str, tokens)) for tokens in token_lists]


def load(config, model_dir, print_fn=print):
    """The run's data: `SyntheticTranslation` or `TFDSTranslation`."""
    if config.synthetic_data:
        return SyntheticTranslation(config.vocabulary_size, config.max_length, config.seed)
    return TFDSTranslation(config, model_dir, print_fn)
