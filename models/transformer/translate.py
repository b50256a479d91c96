"""The `tf-sparsity translate` command: translating lines with a trained
run or its export.

```
echo "The cat sees the dog." | tf-sparsity translate --model_dir runs/mp90
tf-sparsity translate --export runs/mp90/export/1 --input news.en --output news.de
```

`--model_dir` loads the run's `model.keras` (with `tfs.load`) and its
`vocab.spm`, and decodes as the run did (its beam size and length penalty,
unless given); `--export` runs the SavedModel's string signature, which
needs only TensorFlow and tensorflow-text.
"""

import json
import os
import sys

import tensorflow as tf

import tf_sparsity as tfs
from tf_sparsity_models.common import runner
# Imported to register the classes model.keras names (model, loss, schedule).
from tf_sparsity_models.transformer import task  # noqa: F401
from tf_sparsity_models.transformer import vocab as vocab_lib
from tf_sparsity_models.transformer.translator import Translator


def load_run(model_dir, beam_size=None, alpha=None, batch_size=64):
    """A `Translator` for the finished run in `model_dir`, decoding as the
    run did unless `beam_size` or `alpha` are given.

    Raises:
        ValueError: `model_dir` lacks `model.keras` or `vocab.spm`.
    """
    paths = {
        name: os.path.join(model_dir, name)
        for name in (runner.MODEL_FILENAME, vocab_lib.FILENAME)
    }
    for name, path in paths.items():
        if not tf.io.gfile.exists(path):
            raise ValueError(
                f"--model_dir {model_dir} has no {name}: give the model_dir of a "
                "finished transformer run"
            )
    hparams = {}
    row_path = os.path.join(model_dir, runner.RESULT_FILENAME)
    if tf.io.gfile.exists(row_path):
        with tf.io.gfile.GFile(row_path) as f:
            hparams = json.loads(f.read()).get("hparams") or {}
    model = tfs.load(paths[runner.MODEL_FILENAME])
    codec = vocab_lib.Codec(vocab_lib.read(paths[vocab_lib.FILENAME]))
    return Translator(
        model,
        codec,
        beam_size=beam_size or hparams.get("beam_size", 4),
        alpha=hparams.get("alpha", 0.6) if alpha is None else alpha,
        extra_length=hparams.get("extra_decode_length", 50),
        batch_size=batch_size,
        jit_compile=hparams.get("jit_compile", True),
    )


def load_export(export_dir, batch_size=64):
    """`fn(sentences) -> translations` with the SavedModel's string
    signature (decoding settings are those it was exported with).

    Raises:
        ValueError: `export_dir` holds no SavedModel with that signature.
    """
    # Registers the SentencePiece op the signature runs; the only use of
    # tensorflow-text outside keras-hub's tokenizer.
    import tensorflow_text  # noqa: F401

    if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(f"--export {export_dir} holds no SavedModel")
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures.get("serving_default")
    if signature is None or "sentences" not in signature.structured_input_signature[1]:
        raise ValueError(
            f"--export {export_dir} has no string signature (exported from "
            "synthetic data?): translate with --model_dir instead"
        )

    def translate(sentences):
        outputs = []
        for start in range(0, len(sentences), batch_size):
            batch = tf.constant(sentences[start:start + batch_size], tf.string)
            translations = signature(sentences=batch)["translations"].numpy()
            outputs.extend(t.decode("utf-8") for t in translations)
        return outputs

    return translate


def translate_command(args):
    """Runs `tf-sparsity translate` for parsed `args`; returns the exit code.

    An input file is read and the output checked before the model loads,
    so that bad files cost nothing; stdin is read once the model is there
    (a bad --model_dir is reported before waiting for input).
    """
    if args.export and (args.beam_size is not None or args.alpha is not None):
        raise ValueError("--beam_size and --alpha are fixed in an export: use --model_dir to change them")
    check_output(args.output)
    lines = None if args.input == "-" else read_input(args.input)
    if args.export:
        translate = load_export(args.export, args.batch_size)
    else:
        translate = load_run(args.model_dir, args.beam_size, args.alpha, args.batch_size)
    if lines is None:
        lines = read_input(args.input)
    translations = translate(lines) if lines else []
    text = "".join(t + "\n" for t in translations)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


def read_input(path):
    """The lines of `--input` (`-`: stdin), as UTF-8 text.

    Raises:
        ValueError: naming the file when it is missing, a directory or not
            UTF-8.
    """
    if path == "-":
        return sys.stdin.read().splitlines()
    if not os.path.exists(path):
        raise ValueError(f"--input {path} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--input {path} is a directory, not a text file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"--input {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"offset {error.start}): convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def check_output(path):
    """Checks that `--output` (`-`: stdout) can be written as a file.

    Raises:
        ValueError: naming the path when it is a directory or its directory
            does not exist.
    """
    if path == "-":
        return
    if os.path.isdir(path):
        raise ValueError(f"--output {path} is a directory: give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"--output {path}: directory {parent} does not exist")
