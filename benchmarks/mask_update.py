"""Cost of one mask update vs tensor size: ours vs tfmot's.

Ours: the compiled (XLA) exact top-k update of `tfs.update_masks`, on one
Dense kernel of N weights, timed end to end (reading the kernel, computing,
assigning the mask). tfmot's: `Pruning.conditional_mask_update` on a tensor of
N weights (run in its own process, see `tfmot_peer.py`). The amortized cost is
the update time divided by the steps between updates.

With `--kernels K`, ours updates K square Dense kernels of N weights each in
a model trained with Adam: the update also zeroes the newly masked weights
and their optimizer slots (what `fit` with the callback does).

    python benchmarks/mask_update.py --sizes 1e4,1e5,1e6,1e7,2.5e7
    python benchmarks/mask_update.py --sizes 16384,262144 --kernels 34
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402
from tf_sparsity import updater as updater_lib  # noqa: E402


def ours(size, repeats, kernels=1):
    schedule = tfs.ConstantSparsity(0.9, frequency=1)
    if kernels == 1:
        columns = 1000 if size >= 1000 else size
        dense = keras.layers.Dense(columns)
        dense.build((None, size // columns))
        wrapper = tfs.SparseWrapper(dense, tfs.MagnitudePruning(schedule))
        model = keras.Sequential([keras.Input((size // columns,)), wrapper])
    else:
        side = int(round(size ** 0.5))
        model = keras.Sequential([keras.Input((side,))] + [keras.layers.Dense(side) for _ in range(kernels)])
        tfs.sparsify(model, tfs.MagnitudePruning(schedule))
        model.compile(keras.optimizers.Adam(), "mse")
        batch = np.ones((8, side), "float32")
        tfs.update_masks(model, 0)
        model.train_on_batch(batch, batch)  # Builds the optimizer's slots.
        wrapper = model.layers[0]
    updater = updater_lib.get_updater(model)
    updater.attach()
    group = updater.groups[0]
    group.update(0)  # Compile.
    times = []
    for step in range(1, repeats + 1):
        start = time.perf_counter()
        group.update(step)
        ops.convert_to_numpy(wrapper.kernels[0].state.mask[0, 0])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tfmot(sizes, repeats):
    try:
        rows = common.run_tfmot_peer("mask_update", "--sizes", ",".join(map(str, sizes)), "--repeats", repeats)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return {}
    return {row["size"]: row["median_s"] for row in rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e4,1e5,1e6,1e7,2.5e7", type=lambda s: [int(float(v)) for v in s.split(",")])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", type=int, default=1, help="kernels updated together (square, trained with Adam)")
    parser.add_argument("--frequency", type=int, default=2000, help="steps between updates (paper: 2000)")
    parser.add_argument("--step_time_s", type=float, default=None, help="a training step's time, for the amortized fraction")
    parser.add_argument("--no_tfmot", action="store_true")
    parser.add_argument("--no_write", action="store_true")
    args = parser.parse_args(argv)
    if args.kernels < 1:
        parser.error(f"--kernels must be at least 1, got {args.kernels}")
    not_square = [size for size in args.sizes if round(size ** 0.5) ** 2 != size]
    if args.kernels > 1 and not_square:
        parser.error(f"--kernels {args.kernels} updates square kernels: --sizes {not_square} are not squares")
    no_peer = args.no_tfmot or args.kernels > 1 or keras.backend.backend() != "tensorflow"
    peer = {} if no_peer else tfmot(args.sizes, args.repeats)
    rows = []
    for size in args.sizes:
        row = {"size": size, "kernels": args.kernels, "tf_sparsity_s": ours(size, args.repeats, args.kernels),
               "tfmot_s": peer.get(size)}
        if args.step_time_s:
            row["amortized_fraction"] = row["tf_sparsity_s"] / (args.frequency * args.step_time_s)
        rows.append(row)
        tfmot_text = f"{row['tfmot_s'] * 1e3:9.2f} ms" if row["tfmot_s"] else "      n/a"
        print(f"{args.kernels} x {size:>12,d} weights: ours {row['tf_sparsity_s'] * 1e3:9.2f} ms  tfmot {tfmot_text}")
    payload = {"benchmark": "mask_update", "machine": common.machine_info(), "args": vars(args), "results": rows}
    if not args.no_write:
        name = f"mask_update_{keras.backend.backend()}" + (f"_{args.kernels}_kernels" if args.kernels > 1 else "")
        print("wrote", common.write_result(name, payload))
    return payload


if __name__ == "__main__":
    main()
