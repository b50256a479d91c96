"""Learned sparsity patterns on the shipped MNIST subset: the paper's
Section 6 in miniature.

For each target sparsity and seed, LeNet-300-100 is pruned with magnitude
pruning (as in `frontier.py`: 4,000 / 1,000 split, Adam 1e-3, batch 128),
its masks are saved, and the same masks are trained again with `FixedMask`:

- lottery: the pruned run's own initial weights (same seed, so the same
  initialization), the same epochs;
- scratch_e: a fresh initialization, the same epochs;
- scratch_b: a fresh initialization, twice the epochs;
- distribution_only: random masks with the learned per-layer sparsities,
  fresh initialization.

Rows go to `benchmarks/results/learned_masks/rows.jsonl` (method = the
variant); `tf-sparsity report benchmarks/results/learned_masks --out ...`
draws them on one plot.

    python benchmarks/learned_masks.py --sparsities 0.9,0.95,0.98 --seeds 0,1
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks import frontier  # noqa: E402
from tf_sparsity_models.demo import data as data_lib  # noqa: E402

VARIANTS = ("lottery", "scratch_e", "scratch_b", "distribution_only")
# Fresh initializations come from another seed than the pruned run's.
FRESH_SEED_OFFSET = 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet300", choices=["lenet300", "lenet5"])
    parser.add_argument("--sparsities", default="0.9,0.95,0.98", type=lambda s: [float(v) for v in s.split(",")])
    parser.add_argument("--seeds", default="0", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "learned_masks"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows_path = os.path.join(args.out, "rows.jsonl")
    data = data_lib.mnist_subset(seed=0)  # One fixed split for every run.
    rows = []

    def record(row):
        rows.append(row)
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['method']:18s} @{row['target_sparsity']:.2f} seed {row['seed']}: sparsity "
              f"{row['global_sparsity']:.4f} accuracy {row['accuracy']:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for sparsity in args.sparsities:
                pruned, row = frontier.train(args.model, "magnitude", sparsity, seed, args, data)
                masks = tfs.save_masks(pruned, os.path.join(tmp, f"{sparsity}_{seed}.npz"))
                record(row)
                for variant in VARIANTS:
                    shuffle = seed if variant == "distribution_only" else None
                    row = frontier.train(
                        args.model, "fixed_mask", sparsity,
                        seed if variant == "lottery" else seed + FRESH_SEED_OFFSET,
                        args, data,
                        prepare=lambda model, s=shuffle: tfs.load_masks(model, masks, shuffle_seed=s),
                        epochs=args.epochs * (2 if variant == "scratch_b" else 1),
                    )[1]
                    row.update(method=variant, variant=variant, target_sparsity=sparsity, seed=seed)
                    record(row)
    print("rows in", rows_path)
    return rows


if __name__ == "__main__":
    main()
