"""Text for one-shot pruning: loading, tokenizing and cutting into windows.

The papers' protocol (SparseGPT, Wanda): 128 calibration windows of the
model's context length drawn at random from C4's training text, and
perplexity over WikiText-2's test text cut into non-overlapping windows.
"""

import pathlib

import numpy as np

#: `--dataset` name -> (Hugging Face dataset args, calibration split, evaluation split, text field).
DATASETS = {
    "wikitext2": (("wikitext", "wikitext-2-raw-v1"), "train", "test", "text"),
    "c4": (
        ("allenai/c4",),
        {"data_files": {"train": "en/c4-train.00000-of-01024.json.gz"}, "split": "train"},
        {"data_files": {"validation": "en/c4-validation.00000-of-00008.json.gz"}, "split": "validation"},
        "text",
    ),
}


def read_text_file(path):
    """The UTF-8 text of `path`; errors name the file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"--text_file {path}: no such file.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"--text_file {path}: not UTF-8 text ({error.reason} at byte {error.start}).") from None


def load_dataset_text(name):
    """`(calibration_text, evaluation_text)` of a public dataset, through
    Hugging Face `datasets` (needs it installed and a network)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"--dataset {name} needs the `datasets` package (pip install -e "
            "\".[llm]\") and a network; or pass --text_file with local text."
        ) from None
    args, calibration_split, evaluation_split, field = DATASETS[name]

    def load(split):
        kwargs = split if isinstance(split, dict) else {"split": split}
        return datasets.load_dataset(*args, **kwargs)[field]

    if name == "c4":
        # The reference code's validation text: the first 1,100 documents.
        return " ".join(load(calibration_split)[:20000]), " ".join(load(evaluation_split)[:1100])
    return " ".join(load(calibration_split)), "\n\n".join(load(evaluation_split))


def tokenize(model, text):
    """Token ids (int32) of `text` with the model's tokenizer; a model
    without one (no `preprocessor`) reads the UTF-8 bytes as ids."""
    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if tokenizer is None:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype("int32")
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tokenizer(text)), dtype="int32").reshape(-1)


def calibration_windows(tokens, num_samples, length, seed):
    """`num_samples` windows of `length` tokens at random starts (seeded)."""
    if len(tokens) <= length:
        raise ValueError(
            f"The calibration text has {len(tokens)} tokens, fewer than one "
            f"window of --sequence_length {length}."
        )
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length, size=num_samples)
    return np.stack([tokens[s : s + length] for s in starts])


def evaluation_windows(tokens, length, max_windows=None):
    """The text as non-overlapping windows of `length` tokens (the tail
    shorter than a window is dropped, as in the reference code)."""
    count = len(tokens) // length
    if count == 0:
        raise ValueError(
            f"The evaluation text has {len(tokens)} tokens, fewer than one "
            f"window of --sequence_length {length}."
        )
    if max_windows:
        count = min(count, max_windows)
    return tokens[: count * length].reshape(count, length)
