"""`tf-sparsity oneshot`: prune a pretrained causal LM and measure it."""

import json
import pathlib
import platform
import sys
import time

import keras

import tf_sparsity as tfs
from tf_sparsity import structures
from tf_sparsity_models.oneshot import perplexity as perplexity_lib
from tf_sparsity_models.oneshot import text as text_lib

#: Share of a `--text_file` used for calibration; perplexity is measured
#: on the rest, so the model is never calibrated on its test text.
CALIBRATION_SHARE = 0.8


def oneshot_command(args, text=None):
    """Runs the command for parsed `args` (checked by `cli.check_input`);
    returns the exit code.

    Args:
        args: the parsed flags.
        text: the text of `--text_file` (None with `--dataset`).
    """
    structure = structures.parse(args.structure)
    sparsity = args.sparsity
    if structure.fixed_sparsity is not None:
        sparsity = structure.fixed_sparsity
    out = pathlib.Path(args.out)
    if args.text_file:
        split = int(len(text) * CALIBRATION_SHARE)
        calibration_text, evaluation_text = text[:split], text[split:]
    else:
        calibration_text, evaluation_text = text_lib.load_dataset_text(args.dataset)

    model = load_model(args)
    name = args.preset or pathlib.Path(args.model).stem
    length = args.sequence_length or perplexity_lib.context_length(model)
    calibration = text_lib.calibration_windows(
        text_lib.tokenize(model, calibration_text), args.num_samples, length, args.seed
    )
    evaluation = text_lib.evaluation_windows(
        text_lib.tokenize(model, evaluation_text), length, args.max_eval_windows
    )
    print(f"{name}: {len(calibration)} calibration and {len(evaluation)} evaluation windows of {length} tokens")
    common = {
        "task": f"oneshot_{name}",
        "main_metric": "perplexity",
        "steps": 0,
        "model": name,
        "sequence_length": length,
        "num_samples": len(calibration),
        "evaluation_windows": len(evaluation),
        "seed": args.seed,
        "backend": keras.backend.backend(),
        "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    out.mkdir(parents=True, exist_ok=True)
    dense = None
    if not args.skip_dense:
        start = time.perf_counter()
        dense = perplexity_lib.perplexity(model, evaluation, args.batch_size)
        dense_row = dict(common, method="dense", target_sparsity=0.0, global_sparsity=0.0,
                         perplexity=dense, wall_time_s=time.perf_counter() - start)
        _write(out / "dense.json", dense_row)
        print(f"dense perplexity: {dense:.3f}")

    start = time.perf_counter()
    tfs.prune_oneshot(
        model,
        args.method,
        calibration,
        sparsity=sparsity,
        structure=structure,
        num_samples=args.num_samples,
        blocksize=args.blocksize,
        percdamp=args.percdamp,
        batch_size=args.batch_size,
    )
    pruning_time = time.perf_counter() - start
    pruned = perplexity_lib.perplexity(model, evaluation, args.batch_size)
    report = tfs.sparsity_summary(model, print_fn=None)
    method = args.method if isinstance(structure, structures.Unstructured) else f"{args.method}_{args.structure}"
    row = dict(
        common,
        method=method,
        structure=repr(structure),
        target_sparsity=sparsity,
        global_sparsity=report.global_sparsity,
        pruned_layers_sparsity=_pruned_sparsity(report),
        perplexity=pruned,
        dense_perplexity=dense,
        wall_time_s=pruning_time,
    )
    _write(out / "result.json", row)
    print(f"{method} at {sparsity:g}: perplexity {pruned:.3f} (pruned in {pruning_time:.1f} s)")
    if args.save:
        tfs.save(model, out / "model.keras")
    return 0


def load_model(args):
    """The causal LM of `--preset` (keras-hub) or `--model` (a .keras file)."""
    if args.model:
        return keras.saving.load_model(args.model)
    try:
        import keras_hub
    except ImportError:
        raise ValueError(
            f"--preset {args.preset} needs keras-hub: pip install -e \".[llm]\" "
            "(or pip install keras-hub)."
        ) from None
    return keras_hub.models.CausalLM.from_preset(args.preset)


def _pruned_sparsity(report):
    """Sparsity over the pruned layers only (embeddings and head excluded)."""
    pruned = [layer for layer in report.layers if layer.wrapped]
    size = sum(layer.size for layer in pruned)
    return 1.0 - sum(layer.nonzero for layer in pruned) / size if size else 0.0


def _write(path, row):
    path.write_text(json.dumps(row, indent=2) + "\n")
