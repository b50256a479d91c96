"""The shared subword vocabulary: a SentencePiece model built once from the
training text and saved with the run (`vocab.spm`), then reused.

Ids: 0 is padding and 1 end of sentence (tensor2tensor's convention, which
`model.PAD_ID`/`EOS_ID` follow), 2 the unknown piece. Tokenization and
detokenization run in the TensorFlow graph through keras-hub's
`SentencePieceTokenizer` (tensorflow-text ops), so the exported SavedModel
translates strings without Python.

Build one by hand (e.g. once, before multi-worker runs):

```
python -m tf_sparsity_models.transformer.vocab --output vocab.spm \\
    --data_dir ~/tensorflow_datasets
```
"""

import argparse
import os
import shutil
import tempfile

import keras
import keras_hub
import tensorflow as tf

from tf_sparsity_models.common import tfds_data
from tf_sparsity_models.transformer import configs
from tf_sparsity_models.transformer.model import EOS_ID
from tf_sparsity_models.transformer.model import PAD_ID

UNK_ID = 2
FILENAME = "vocab.spm"


def build(sentences, path, vocabulary_size, total=None, print_fn=print):
    """Trains a SentencePiece model on `sentences` and writes it to `path`.

    Args:
        sentences: an iterable of `str` (or UTF-8 `bytes`).
        path: the `.spm` file to write (a `gs://` path works too).
        vocabulary_size: pieces in the vocabulary (at most: a small corpus
            gets fewer).
        total: how many sentences `sentences` holds, for the progress bar.
        print_fn: where progress notes go.

    Returns:
        `path`.

    Raises:
        ValueError: no sentences, or too few distinct pieces for
            `vocabulary_size`.
    """
    # Only building a vocabulary needs the sentencepiece package; reading
    # and tokenizing go through keras-hub and tensorflow-text.
    import sentencepiece as spm

    workdir = tempfile.mkdtemp(prefix="tf_sparsity_vocab_")
    try:
        text_path = os.path.join(workdir, "sentences.txt")
        progress = keras.utils.Progbar(total, unit_name="sentence")
        count = 0
        with open(text_path, "w", encoding="utf-8") as f:
            for sentence in sentences:
                if isinstance(sentence, bytes):
                    sentence = sentence.decode("utf-8")
                sentence = sentence.replace("\n", " ").strip()
                if sentence:
                    f.write(sentence + "\n")
                    count += 1
                    if count % 1000 == 0:
                        progress.update(count)
        progress.update(count, finalize=True)
        if not count:
            raise ValueError("no sentences to build the vocabulary from")
        print_fn(f"Training a {vocabulary_size}-piece SentencePiece vocabulary on {count} sentences")
        prefix = os.path.join(workdir, "vocab")
        try:
            spm.SentencePieceTrainer.train(
                input=text_path,
                model_prefix=prefix,
                vocab_size=vocabulary_size,
                model_type="unigram",
                character_coverage=1.0,
                pad_id=PAD_ID,
                eos_id=EOS_ID,
                unk_id=UNK_ID,
                bos_id=-1,
                input_sentence_size=0,  # All of them (already sampled).
                # Small corpora (tests, toy tasks) get fewer pieces, not an error.
                hard_vocab_limit=False,
                minloglevel=2,
            )
        except RuntimeError as error:
            raise ValueError(f"cannot build a {vocabulary_size}-piece vocabulary: {error}") from None
        tf.io.gfile.makedirs(os.path.dirname(path) or ".")
        tf.io.gfile.copy(prefix + ".model", path, overwrite=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_fn(f"Vocabulary written to {path}")
    return path


def read(path):
    """The serialized SentencePiece model at `path`.

    Raises:
        ValueError: no such file.
    """
    if not tf.io.gfile.exists(path):
        raise ValueError(f"vocabulary {path} does not exist")
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def tokenizer(proto):
    """A keras-hub `SentencePieceTokenizer` on the serialized model `proto`.

    Make it after `keras.utils.set_random_seed` / `tf.random.set_seed`:
    seeding TensorFlow drops the ops' resources made before it.
    """
    tokenizer = keras_hub.tokenizers.SentencePieceTokenizer(proto=proto, dtype="int32")
    # Called once eagerly: keras-hub creates its tensorflow-text op on the
    # first call, and one created inside a tf.data function dies with it.
    # This also builds the layer (an export archive tracks built layers).
    tokenizer(tf.constant([""]))
    return tokenizer


def add_eos(ragged):
    """Appends `EOS_ID` to every row of a ragged batch of token ids."""
    eos = tf.fill([ragged.nrows(), 1], tf.constant(EOS_ID, ragged.dtype))
    return tf.concat([ragged, tf.RaggedTensor.from_tensor(eos)], axis=1)


def _in_graph(function):
    # Called eagerly, keras-hub tokenizers return Python lists; in a graph,
    # (ragged) tensors.
    return tf.function(function, autograph=False)


class Codec:
    """Sentences to token ids and back with one SentencePiece model.

    Args:
        proto: the serialized SentencePiece model (`read(path)`).
    """

    def __init__(self, proto):
        self.proto = proto
        self.tokenizer = tokenizer(proto)
        self.vocabulary_size = int(self.tokenizer.vocabulary_size())
        self._tokenize = _in_graph(lambda s: add_eos(self.tokenizer(s)))
        self._detokenize = _in_graph(self.tokenizer.detokenize)

    def tokenize(self, sentences):
        """Token id lists, each ending with EOS, of a list of str."""
        if not sentences:
            return []
        ragged = self._tokenize(tf.constant(list(sentences), tf.string))
        return [list(row) for row in ragged.numpy()]

    def detokenize(self, token_lists):
        """Strings of token id lists (cut at EOS, no padding)."""
        if not token_lists:
            return []
        ragged = tf.ragged.constant(token_lists, dtype=tf.int32, row_splits_dtype=tf.int64)
        return [s.decode("utf-8") for s in self._detokenize(ragged).numpy()]


def vocabulary_text(name, data_dir, languages, sentences, builder=None):
    """`(iterator of sentences, count)`: about `sentences` pairs spread over
    the training split (every k-th pair), both languages of each."""
    if builder is None:
        builder = tfds_data.open_builder(name, data_dir)
    size = tfds_data.split_size(builder.info.splits, "train")
    pairs = builder.as_dataset(split="train", shuffle_files=False)
    stride = max(size // sentences, 1) if size else 1
    if stride > 1:
        pairs = pairs.shard(stride, 0)
    pairs = pairs.take(sentences)
    total = min(sentences, -(-size // stride)) * len(languages) if size else None

    def text():
        for pair in pairs.as_numpy_iterator():
            for language in languages:
                yield pair[language]

    return text(), total


def main(argv=None):
    defaults = configs.TransformerConfig()
    parser = argparse.ArgumentParser(description="Build the shared subword vocabulary.")
    parser.add_argument("--output", required=True, help="the .spm file to write")
    parser.add_argument(
        "--dataset", default=defaults.dataset,
        help=f"TFDS translation dataset (default: {defaults.dataset})",
    )
    parser.add_argument("--data_dir", default=None, help="TFDS data directory (default: TFDS's)")
    parser.add_argument(
        "--vocabulary_size", type=int, default=defaults.vocabulary_size,
        help=f"pieces in the vocabulary (default: {defaults.vocabulary_size})",
    )
    parser.add_argument(
        "--sentences", type=int, default=defaults.vocabulary_sentences,
        help="training sentence pairs the vocabulary is built from "
        f"(default: {defaults.vocabulary_sentences})",
    )
    args = parser.parse_args(argv)
    sentences, total = vocabulary_text(
        args.dataset, args.data_dir, (defaults.source_language, defaults.target_language),
        args.sentences,
    )
    build(sentences, args.output, args.vocabulary_size, total=total)


if __name__ == "__main__":
    main()
