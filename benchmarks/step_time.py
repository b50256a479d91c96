"""Training-step time of each sparsity method relative to dense.

Dense and sparse models alternate in one process, in rounds of `--steps`
steps each, so drifts of the machine hit both alike; the first round is a
warm-up and excluded. The sparse runs include `tfs.SparsityCallback` and a
mask update every `--frequency` steps, i.e. what training really costs; the
median excludes the rare update steps, the mean includes them.

    python benchmarks/step_time.py --models lenet300,cnn --methods magnitude,random
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402


def make(model_name, method, sparsity, frequency, jit_compile, batch_size, total_steps, steps, gradual=False):
    keras.utils.set_random_seed(0)
    model, input_shape, num_classes = common.build_model(model_name)
    callbacks = [common.StepTimer()]
    if method != "dense":
        if issubclass(tfs.METHODS[method], tfs.PruningMethod):
            # At the target from the first step (or, with `gradual`, from 0
            # to the target over the timed steps, as tfmot's peer run), with
            # a mask update every `frequency` steps.
            settings = dict(
                initial_sparsity=0.0 if gradual else sparsity, begin_step=0,
                end_step=max(total_steps, frequency + 1), frequency=frequency,
            )
        else:
            settings = dict(num_examples=batch_size * steps)
        model = tfs.sparsify(model, tfs.make_method(method, sparsity, total_steps, **settings))
        # After the timer: its batch-begin hook (the per-step check for a
        # due update) is inside the timed step.
        callbacks.append(tfs.SparsityCallback())
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    x, y = common.random_batches(input_shape, num_classes, batch_size, steps)
    return model, callbacks, x, y


def measure_on_device(args):
    """Custom-loop timing with one batch kept on the accelerator.

    `fit` would copy each batch from host memory (for ResNet-50 at 224 and
    batch 256, ~150 MB per step), which dilutes the ratios; here the batch
    stays on the device and each step is `tfs.update_masks` plus
    `train_on_batch`, timed until its loss is ready.
    """
    import time

    results = []
    for model_name in args.models:
        runs = {}
        total_steps = args.steps * args.rounds
        for method in ["dense"] + args.methods:
            model, _, x, y = make(
                model_name, method, args.sparsity, args.frequency, args.jit_compile, args.batch_size,
                total_steps, 1,
            )
            runs[method] = {"model": model, "x": _on_device(x), "y": _on_device(y), "times": [], "step": 0}
        for round_index in range(args.rounds + 1):
            for method, run in runs.items():
                for _ in range(args.steps):
                    start = time.perf_counter()
                    if method != "dense":
                        tfs.update_masks(run["model"], run["step"])
                    loss = run["model"].train_on_batch(run["x"], run["y"])
                    float(np.asarray(loss))
                    if round_index > 0:  # Round 0 is the warm-up (compilation).
                        run["times"].append(time.perf_counter() - start)
                    run["step"] += 1
        results += _rows(model_name, {m: (r["model"], r["times"]) for m, r in runs.items()}, args)
    return results


def _on_device(array):
    if keras.backend.backend() == "jax":
        import jax

        return jax.device_put(array)
    return array


def _rows(model_name, runs, args):
    dense_times = runs["dense"][1]
    dense_median = common.median(dense_times)
    rows = []
    for method, (model, times) in runs.items():
        row = {
            "model": model_name,
            "method": method,
            "batch_size": args.batch_size,
            "jit_compile": args.jit_compile,
            "mixed_precision": args.mixed_precision,
            "loop": "device" if args.device_data else "fit",
            "schedule": "gradual" if args.gradual else "at_target",
            "steps_timed": len(times),
            "median_step_s": common.median(times),
            "mean_step_s": sum(times) / len(times),
            "ratio_median": common.median(times) / dense_median,
            "ratio_mean": (sum(times) / len(times)) / (sum(dense_times) / len(dense_times)),
        }
        if method != "dense":
            row["global_sparsity"] = tfs.sparsity_summary(model, print_fn=None).global_sparsity
        rows.append(row)
        _print_row(model_name, method, row)
    return rows


def _print_row(model_name, label, row):
    print(
        f"{model_name:10s} {label:20s} median {row['median_step_s'] * 1e3:8.3f} ms "
        f"x{row['ratio_median']:.3f} (mean x{row['ratio_mean']:.3f})",
        flush=True,
    )


def measure(args):
    results = []
    for model_name in args.models:
        runs = {}
        total_steps = args.steps * args.rounds
        for method in ["dense"] + args.methods:
            runs[method] = make(
                model_name, method, args.sparsity, args.frequency, args.jit_compile, args.batch_size,
                total_steps, args.steps, gradual=args.gradual,
            )
        names = list(runs)
        round_medians = {name: [] for name in names}
        for round_index in range(args.rounds + 1):
            # The order rotates every round, so that no method always runs
            # right after another (the machine's state drifts within rounds).
            shift = round_index % len(names)
            for method in names[shift:] + names[:shift]:
                model, callbacks, x, y = runs[method]
                timer = callbacks[0]
                before = len(timer.times)
                model.fit(
                    x, y, batch_size=args.batch_size, epochs=1, steps_per_epoch=args.steps,
                    verbose=0, callbacks=callbacks,
                )
                if round_index == 0:  # Warm-up (tracing, compilation).
                    del timer.times[before:]
                else:
                    round_medians[method].append(common.median(timer.times[before:]))
        rows = _rows(
            model_name, {m: (model, cbs[0].times) for m, (model, cbs, _, _) in runs.items()}, args
        )
        for row in rows:
            # Each round's median over dense's in the same round, then the
            # median over rounds: robust to drifts between rounds.
            ratios = [
                a / b for a, b in zip(round_medians[row["method"]], round_medians["dense"])
            ]
            row["ratio_median_of_rounds"] = common.median(ratios)
            print(f"{model_name:10s} {row['method']:20s} median of round ratios x{row['ratio_median_of_rounds']:.3f}")
        results += rows
    return results


def measure_tfmot(args):
    """tfmot's prune_low_magnitude vs its own tf_keras dense, in its own process."""
    rows = []
    for model_name in args.models:
        peer_rows = common.run_tfmot_peer(
            "step_time", "--model", model_name, "--batch_size", args.batch_size,
            "--steps", args.steps, "--rounds", args.rounds, "--frequency", args.frequency,
            "--sparsity", args.sparsity, "--jit_compile", int(args.jit_compile),
        )
        for row in peer_rows:
            _print_row(model_name, f"{row['library']}:{row['method']}", row)
            rows.append(row)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet300,cnn", type=lambda s: s.split(","))
    parser.add_argument("--methods", default="magnitude,random", type=lambda s: s.split(","))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frequency", type=int, default=100, help="mask update frequency")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--jit_compile", type=int, default=1)
    parser.add_argument("--mixed_precision", default=None, help="e.g. mixed_bfloat16")
    parser.add_argument("--device_data", action="store_true", help="custom loop, batch kept on the device")
    parser.add_argument(
        "--gradual", action="store_true",
        help="prune from 0 to --sparsity over all timed steps (one fit call, i.e. one "
        "epoch with its sparsity logging, per round), as tfmot's peer run does",
    )
    parser.add_argument("--tfmot", action="store_true", help="also time tfmot (needs the tfmot extra)")
    parser.add_argument("--name", default=None, help="results file name (default: derived)")
    parser.add_argument("--no_write", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.jit_compile = bool(args.jit_compile)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    results = measure_on_device(args) if args.device_data else measure(args)
    if args.tfmot:
        results += measure_tfmot(args)
    payload = {"benchmark": "step_time", "machine": common.machine_info(), "args": vars(args), "results": results}
    if not args.no_write:
        name = args.name or (
            f"step_time_{keras.backend.backend()}_{'xla' if args.jit_compile else 'noxla'}"
            + ("_gradual" if args.gradual else "")
        )
        print("wrote", common.write_result(name, payload))
    return payload


if __name__ == "__main__":
    main()
