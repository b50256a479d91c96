"""Transformer (base) training-step time through `tf-sparsity train`'s runner,
dense and with each method, on synthetic token batches.

What users run: the shared runner with its callbacks (backups, StopAtStep,
SparsityCallback, TensorBoard) and the method's schedule updating. The
first `--warmup` steps (tracing and compiling) are excluded; the median step
time of the rest is reported, with tokens per second. Sparse runs prune from
step 0 to `--steps / 2`, so their mask updates fall among the timed steps.

    python benchmarks/transformer_step_time.py --methods dense,magnitude --steps 60
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from benchmarks import common  # noqa: E402
from tf_sparsity_models.common import config as config_lib  # noqa: E402
from tf_sparsity_models.common import runner  # noqa: E402
from tf_sparsity_models.common import task as task_lib  # noqa: E402


def measure(method, args):
    overrides = dict(
        method=method, sparsity=0.0 if method == "dense" else 0.9, synthetic_data=True,
        vocabulary_size=32768, steps=args.steps, batch_size=args.batch_size,
        checkpoint_every=args.steps, eval_steps=0, bleu_examples=0, export=False,
        jit_compile=args.jit_compile, mixed_precision=args.mixed_precision,
    )
    if method != "dense":
        overrides.update(begin_step=0, end_step=args.steps // 2)
        if method in ("magnitude", "random"):
            overrides["frequency"] = max(args.steps // 10, 1)
    config = config_lib.make_config(task_lib.get("transformer"), None, overrides)
    timer = common.StepTimer()
    with tempfile.TemporaryDirectory() as model_dir:
        row = runner.run(config, model_dir, callbacks=[timer], verbose=0, print_fn=lambda *a: None).row
    timed = timer.times[args.warmup:]
    step = common.median(timed)
    return {
        "method": method,
        "global_sparsity": row["global_sparsity"],
        "first_step_s": timer.times[0],
        "median_step_s": step,
        "mean_step_s": sum(timed) / len(timed),
        "tokens_per_s": args.batch_size / step,
        "timed_steps": len(timed),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dense,magnitude,random,variational_dropout,l0")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=2048, help="tokens per batch")
    parser.add_argument("--jit_compile", default="true")
    parser.add_argument("--mixed_precision", default=None)
    parser.add_argument("--name", default="transformer_step_time_cpu")
    args = parser.parse_args(argv)
    args.jit_compile = args.jit_compile.lower() in ("1", "true", "yes")
    runs = []
    for method in args.methods.split(","):
        runs.append(measure(method, args))
        print(runs[-1], flush=True)
    dense = next((r for r in runs if r["method"] == "dense"), None)
    if dense:
        for run in runs:
            run["vs_dense"] = run["median_step_s"] / dense["median_step_s"]
    payload = {"machine": common.machine_info(), "settings": vars(args), "runs": runs}
    print("written to", common.write_result(args.name, payload))


if __name__ == "__main__":
    main()
