"""Real speed from sparsity: LiteRT latency of dense, unstructured and
1x4-block sparse models, and the accuracy cost of the structures.

Latency: MLPs pruned to 80/90/95% (magnitude on random weights: latency does
not depend on the values), exported with `tfs.export_litert`, run by
ai-edge-litert with one thread at batch 1 and 32; next to them the dense
model under Keras/TensorFlow (an XLA-compiled `model(x)`). Each model's
invokes are interleaved in rounds so that load on the machine hits all
variants alike; the figure is the median.

Accuracy: LeNet-300-100 on the 5,000-image MNIST subset (the demo's
training), magnitude pruning unstructured vs 1x4 blocks at 80/90/95%, and
2:4 vs unstructured at 50%.

    python benchmarks/litert_speed.py latency
    python benchmarks/litert_speed.py accuracy --seeds 0 1
    python benchmarks/litert_speed.py table      # markdown for docs/benchmarks.md

(Not named `litert.py`: scripts run from this folder, such as
`tfmot_peer.py`, would import it instead of TensorFlow Lite's `litert`.)
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402

MODELS = {
    # name: (input size, hidden sizes, output size)
    "lenet300": (784, (300, 100), 10),
    "ffn_512_2048_512": (512, (2048,), 512),
    "mlp_3x2048": (2048, (2048, 2048), 2048),
}
SPARSITIES = (0.8, 0.9, 0.95)
STRUCTURES = {"unstructured": tfs.Unstructured(), "block_1x4": tfs.Block((1, 4))}


def mlp(name):
    inputs, hidden, outputs = MODELS[name]
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(n, activation="relu", name=f"fc{i + 1}") for i, n in enumerate(hidden)]
    layers.append(keras.layers.Dense(outputs, name=f"fc{len(hidden) + 1}"))
    return keras.Sequential(layers, name=name)


def pruned(name, sparsity, structure):
    keras.utils.set_random_seed(0)
    schedule = tfs.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=1, frequency=1)
    model = tfs.sparsify(mlp(name), tfs.MagnitudePruning(schedule, structure=structure))
    tfs.update_masks(model, 1)
    return model


def litert_runner(path, batch):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], [batch, source["shape"][1]])
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).normal(size=(batch, source["shape"][1])).astype("float32")
    interpreter.set_tensor(source["index"], x)

    def run():
        interpreter.invoke()

    return run


def keras_runner(model, batch):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(size=(batch, model.input_shape[1])).astype("float32"))
    call = tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)

    def run():
        call(x).numpy()

    return run


def timed(runners, rounds, per_round):
    """Median seconds per call of each runner, interleaving the runners."""
    times = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(5):
            run()  # Warm-up (and XLA compilation).
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(per_round):
                run()
            times[name].append((time.perf_counter() - start) / per_round)
    return {name: float(np.median(values)) for name, values in times.items()}


def latency(args):
    import tensorflow as tf

    try:  # One thread for Keras too, like the LiteRT interpreter.
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started (a smoke test).
        pass
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            files, sizes, storage = {}, {}, {}
            dense_path = os.path.join(directory, f"{name}_dense.tflite")
            dense_model = mlp(name)
            files["dense"] = tfs.export_litert(dense_model, dense_path, print_fn=None).path
            for sparsity in SPARSITIES:
                for label, structure in STRUCTURES.items():
                    key = f"{label}_{sparsity:g}"
                    path = os.path.join(directory, f"{name}_{key}.tflite")
                    report = tfs.export_litert(pruned(name, sparsity, structure), path, print_fn=None)
                    files[key] = report.path
                    storage[key] = sorted({k.storage for k in report.kernels})
            for key, path in files.items():
                sizes[key] = os.path.getsize(path)
            for batch in args.batches:
                runners = {"keras_xla_dense": keras_runner(dense_model, batch)}
                runners.update({f"litert_{k}": litert_runner(p, batch) for k, p in files.items()})
                medians = timed(runners, args.rounds, max(1, args.calls // batch))
                dense = medians["litert_dense"]
                for key, seconds in medians.items():
                    variant = key.replace("litert_", "")
                    rows.append(
                        {
                            "model": name,
                            "batch": batch,
                            "variant": variant,
                            "ms": seconds * 1e3,
                            "speedup_vs_litert_dense": dense / seconds,
                            "file_bytes": sizes.get(variant),
                            "storage": storage.get(variant),
                        }
                    )
                    print(f"{name:18s} batch {batch:3d} {variant:22s} {seconds * 1e3:8.3f} ms  "
                          f"x{dense / seconds:5.2f}  {sizes.get(variant) or '':>10}")
    return {"kind": "latency", "threads": 1, "rows": rows}


def accuracy(args):
    from tf_sparsity_models.demo import run as demo

    runs = [(s, label) for s in SPARSITIES for label in STRUCTURES]
    runs += [(0.5, "unstructured"), (0.5, "nm_2_4")]
    structures = dict(STRUCTURES, nm_2_4=tfs.NM(2, 4))
    rows = []
    for seed in args.seeds:
        for sparsity, label in runs:
            _, row = demo.train_lenet(
                "magnitude", sparsity, epochs=args.epochs, seed=seed, verbose=0,
                method_kwargs={"structure": structures[label]},
            )
            rows.append(
                {
                    "structure": label,
                    "target_sparsity": sparsity,
                    "global_sparsity": row["global_sparsity"],
                    "accuracy": row["metrics"]["accuracy"] if "metrics" in row else row["accuracy"],
                    "seed": seed,
                }
            )
            print(rows[-1])
    return {"kind": "accuracy", "model": "lenet300", "epochs": args.epochs, "rows": rows}


def table(latency_result, accuracy_result=None):
    """Markdown tables of the recorded results."""
    lines = [
        "| model | batch | dense LiteRT | Keras XLA dense | " + " | ".join(
            f"{label.replace('_', ' ')} {s:.0%}" for s in SPARSITIES for label in STRUCTURES
        ) + " |",
        "|---|---|---|---|" + "---|" * (len(SPARSITIES) * len(STRUCTURES)),
    ]
    by_key = {(r["model"], r["batch"], r["variant"]): r for r in latency_result["rows"]}
    for (model, batch) in sorted({(r["model"], r["batch"]) for r in latency_result["rows"]},
                                 key=lambda k: (list(MODELS).index(k[0]), k[1])):
        cells = [f"{by_key[(model, batch, 'dense')]['ms']:.3f} ms",
                 f"{by_key[(model, batch, 'keras_xla_dense')]['ms']:.3f} ms"]
        for sparsity in SPARSITIES:
            for label in STRUCTURES:
                row = by_key[(model, batch, f"{label}_{sparsity:g}")]
                cells.append(f"{row['ms']:.3f} ms ({row['speedup_vs_litert_dense']:.2f}x)")
        lines.append(f"| {model} | {batch} | " + " | ".join(cells) + " |")
    lines += ["", "| model | dense file | " + " | ".join(
        f"{label.replace('_', ' ')} {s:.0%}" for s in SPARSITIES for label in STRUCTURES) + " |",
        "|---|---|" + "---|" * (len(SPARSITIES) * len(STRUCTURES))]
    for model in [m for m in MODELS if (m, 1, "dense") in by_key]:
        cells = [f"{by_key[(model, 1, 'dense')]['file_bytes'] / 1e6:.2f} MB"]
        cells += [f"{by_key[(model, 1, f'{label}_{s:g}')]['file_bytes'] / 1e6:.2f} MB"
                  for s in SPARSITIES for label in STRUCTURES]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if accuracy_result:
        lines += ["", "| LeNet-300-100 | " + " | ".join(
            f"{t:.0%}" for t in sorted({r["target_sparsity"] for r in accuracy_result["rows"]})) + " |"]
        targets = sorted({r["target_sparsity"] for r in accuracy_result["rows"]})
        lines.append("|---|" + "---|" * len(targets))
        for label in ("unstructured", "block_1x4", "nm_2_4"):
            cells = []
            for target in targets:
                values = [100 * r["accuracy"] for r in accuracy_result["rows"]
                          if r["structure"] == label and r["target_sparsity"] == target]
                cells.append(f"{np.mean(values):.2f} ({len(values)})" if values else "")
            lines.append(f"| {label.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["latency", "accuracy", "table"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="invokes per round at batch 1")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--name", default=None, help="result file name (default: litert_PART_cpu)")
    args = parser.parse_args(argv)
    if args.part == "table":
        import json

        def read(part):
            path = os.path.join(common.RESULTS_DIR, f"litert_{part}_cpu.json")
            return json.load(open(path)) if os.path.exists(path) else None

        print(table(read("latency"), read("accuracy")))
        return None
    result = latency(args) if args.part == "latency" else accuracy(args)
    result["machine"] = common.machine_info()
    path = common.write_result(args.name or f"litert_{args.part}_cpu", result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
