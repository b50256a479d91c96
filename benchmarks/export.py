"""Exported SavedModels: inference latency and compressed size, sparse vs dense.

A 90%-sparse model is exported with `tfs.export_saved_model` (wrappers
stripped, zeros folded into the kernels) and its dense twin with
`model.export`; both are loaded back with `tf.saved_model.load` and timed on
their `serving_default` signature. Latency should match (no wrapper residue);
the size on disk is the same (dense storage), but gzip compresses the zeros.

    python benchmarks/export.py --models lenet300,cnn
"""

import argparse
import gzip
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402


def directory_size(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def gzipped_size(path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(path, arcname=".")
    return len(gzip.compress(buffer.getvalue(), compresslevel=9))


def load_serving(export_dir):
    import tensorflow as tf

    return tf.saved_model.load(export_dir).signatures["serving_default"]


def latency(serve, x, repeats):
    import tensorflow as tf

    x = tf.constant(x)
    serve(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = serve(x)
        next(iter(outputs.values())).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet300,cnn", type=lambda s: s.split(","))
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--batch_sizes", default="1,128", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--no_write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            keras.utils.set_random_seed(0)
            dense, input_shape, _ = common.build_model(model_name)
            dense_dir = os.path.join(tmp, model_name, "dense")
            dense.export(dense_dir, format="tf_saved_model", verbose=False)
            sparse = tfs.sparsify(dense, tfs.MagnitudePruning(tfs.OneShot(args.sparsity)))
            tfs.update_masks(sparse, 0)
            sparse_dir = os.path.join(tmp, model_name, "sparse")
            tfs.export_saved_model(sparse, sparse_dir)
            row = {
                "model": model_name,
                "sparsity": tfs.sparsity_summary(sparse, print_fn=None).global_sparsity,
                "dense_bytes": directory_size(dense_dir),
                "sparse_bytes": directory_size(sparse_dir),
                "dense_gzip_bytes": gzipped_size(dense_dir),
                "sparse_gzip_bytes": gzipped_size(sparse_dir),
            }
            dense_serve, sparse_serve = load_serving(dense_dir), load_serving(sparse_dir)
            for batch in args.batch_sizes:
                x = np.random.default_rng(0).normal(size=(batch,) + tuple(input_shape)).astype("float32")
                # Alternate to share the machine's drift.
                dense_t, sparse_t = [], []
                for _ in range(3):
                    dense_t.append(latency(dense_serve, x, args.repeats // 3))
                    sparse_t.append(latency(sparse_serve, x, args.repeats // 3))
                row[f"dense_latency_s_b{batch}"] = statistics.median(dense_t)
                row[f"sparse_latency_s_b{batch}"] = statistics.median(sparse_t)
                row[f"latency_ratio_b{batch}"] = statistics.median(sparse_t) / statistics.median(dense_t)
            row["gzip_ratio"] = row["sparse_gzip_bytes"] / row["dense_gzip_bytes"]
            rows.append(row)
            print(
                f"{model_name:9s} latency x{row[f'latency_ratio_b{args.batch_sizes[0]}']:.3f} (batch "
                f"{args.batch_sizes[0]}), gzip {row['sparse_gzip_bytes'] / 1e6:.2f} MB vs "
                f"{row['dense_gzip_bytes'] / 1e6:.2f} MB (x{row['gzip_ratio']:.2f})",
                flush=True,
            )
    payload = {"benchmark": "export", "machine": common.machine_info(), "args": vars(args), "results": rows}
    if not args.no_write:
        print("wrote", common.write_result("export_cpu", payload))
    return payload


if __name__ == "__main__":
    main()
