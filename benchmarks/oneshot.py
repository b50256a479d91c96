"""Time and peak memory of one-shot pruning a GPT-2-base-sized model.

Builds keras-hub's `GPT2CausalLM` with gpt2_base_en's configuration (124M
parameters, 12 layers, hidden 768, context 1024) and random weights (speed
does not depend on them), then prunes it at 50% with each method in its own
process, so each peak resident memory is that method's alone. Calibration
data are random token ids; the papers use 128 windows of the context
length (`--num_samples 128 --sequence_length 1024`).

    python benchmarks/oneshot.py --num_samples 16 --sequence_length 256
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = ("magnitude", "wanda", "sparsegpt")
CONFIGS = {
    "gpt2_base": dict(
        vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
        intermediate_dim=3072, max_sequence_length=1024,
    ),
    # For the test suite's smoke run.
    "tiny": dict(
        vocabulary_size=128, num_layers=2, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=32,
    ),
}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(method, config, num_samples, sequence_length, structure, batch_size):
    """Prunes one freshly built model; returns the measurements."""
    import keras
    import keras_hub
    import numpy as np

    import tf_sparsity as tfs

    keras.utils.set_random_seed(0)
    model = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(**CONFIGS[config]), preprocessor=None
    )
    token_ids = np.random.default_rng(0).integers(
        0, CONFIGS[config]["vocabulary_size"], size=(num_samples, sequence_length)
    ).astype("int32")
    before = peak_rss_mib()
    start = time.perf_counter()
    tfs.prune_oneshot(
        model, method, token_ids, sparsity=0.5,
        structure=tfs.structures.parse(structure), num_samples=num_samples,
        batch_size=batch_size, verbose=0,
    )
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "structure": structure,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_pruning_mib": before,
        "pruned_layers": len(tfs.sparse_layers(model)),
        "parameters": model.count_params(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--config", choices=sorted(CONFIGS), default="gpt2_base")
    parser.add_argument("--no_write", action="store_true", help="print only, write no result file")
    parser.add_argument("--num_samples", type=int, default=128)
    parser.add_argument("--sequence_length", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--structure", default="unstructured")
    parser.add_argument("--name", default="oneshot_cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_one(args.child, args.config, args.num_samples, args.sequence_length, args.structure, args.batch_size)
        print("RESULT " + json.dumps(result))
        return
    from benchmarks import common

    results = []
    for method in args.methods.split(","):
        command = [
            sys.executable, os.path.abspath(__file__), "--child", method, "--config", args.config,
            "--num_samples", str(args.num_samples), "--sequence_length", str(args.sequence_length),
            "--batch_size", str(args.batch_size), "--structure", args.structure,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
        print(json.dumps(results[-1]))
    payload = {
        "machine": common.machine_info(),
        "model": f"GPT2CausalLM, {args.config} configuration, random weights",
        "num_samples": args.num_samples,
        "sequence_length": args.sequence_length,
        "batch_size": args.batch_size,
        "results": results,
    }
    if not args.no_write:
        print("written to", common.write_result(args.name, payload))
    return payload


if __name__ == "__main__":
    main()
