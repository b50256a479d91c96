"""Measured speed of structured pruning: `tfs.shrink` models served as
SavedModels, against the dense model, in one run.

Models (random weights: speed does not depend on the values):

* ResNet-50 (`keras.applications.ResNet50(weights=None)`, 224x224x3) with
  25/50/75% of the units of every dependency group removed
  (`structure=tfs.Units()`, `ConstantSparsity(s, 0)`, `update_masks`,
  `shrink`): filters of every convolution, residual streams included (all
  members of an `Add` go together); the logits stay.
* A BERT-base-sized encoder from plain Keras layers: 12 blocks of
  MultiHeadAttention (12 heads, key_dim 64) + Add + LayerNormalization +
  Dense(3072, gelu) + Dense(768) + Add + LayerNormalization, on float
  embeddings (batch, seq_len, 768) (no token Embedding: its table would
  dominate the parameters and is not pruned). Variants: 50% of the FFN
  units (the groups `dependency.analyze` finds prunable: the intermediate
  Dense; the residual stream is pinned by LayerNormalization), 25% of the
  heads, and both (a Heads pass on the FFN-shrunk model).

Every variant is a plain Keras model, exported with
`tfs.export_saved_model`, loaded back with `tf.saved_model.load`, and its
`serve` function wrapped in `tf.function(jit_compile=True)` (XLA on). After
warm-up (compilation), the variants of a model are timed in interleaved
rounds (each round: `--batch1_calls` batch-1 calls, then one batch-32 call,
for each variant in turn), so that load from other jobs hits them alike.
Batch-1 latency is the median call time; batch-32 throughput is 32 / the
median call time.

FLOPs (2 per multiply-add, 1 per elementwise op) come from TensorFlow's
profiler (`model_analyzer.profile` with
`ProfileOptionBuilder.float_operation()`) on the graph of the model's
batch-1 concrete function; the profiler has no count for `Einsum` ops (the
attention scores and weighted values of MultiHeadAttention), so those are
added from each op's equation and shapes (2 x the product of all index
sizes).

    python benchmarks/shrink_speed.py                       # the full run
    python benchmarks/shrink_speed.py --tiny --repeats 2    # a smoke run
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_sparsity as tfs  # noqa: E402
from benchmarks import common  # noqa: E402
from tf_sparsity import dependency  # noqa: E402

MODELS = ("resnet50", "encoder")
DEFAULT_OUT = os.path.join(common.RESULTS_DIR, "shrink_speed_cpu.json")


# --------------------------------------------------------------------------
# Models


def resnet(tiny, image_size):
    """ResNet-50 (or, tiny, a small bottleneck ResNet) and its input shape."""
    if not tiny:
        shape = (image_size, image_size, 3)
        return keras.applications.ResNet50(weights=None, input_shape=shape, classifier_activation=None), shape
    layers = keras.layers
    shape = (64, 64, 3)
    inputs = keras.Input(shape)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, (width, stride) in enumerate([(16, 1), (32, 2)]):
        shortcut = layers.Conv2D(4 * width, 1, strides=stride, name=f"s{stage}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"s{stage}_proj_bn")(shortcut)
        y = layers.Conv2D(width, 1, strides=stride, name=f"s{stage}_a")(x)
        y = layers.BatchNormalization(name=f"s{stage}_a_bn")(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(width, 3, padding="same", name=f"s{stage}_b")(y)
        y = layers.BatchNormalization(name=f"s{stage}_b_bn")(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(4 * width, 1, name=f"s{stage}_c")(y)
        y = layers.BatchNormalization(name=f"s{stage}_c_bn")(y)
        x = layers.ReLU()(layers.Add(name=f"s{stage}_add")([shortcut, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_resnet"), shape


def encoder(tiny, seq_len):
    """A BERT-base-sized (or, tiny, a 2-block) encoder of plain Keras layers."""
    layers = keras.layers
    blocks, width, heads, ffn = (2, 64, 4, 256) if tiny else (12, 768, 12, 3072)
    inputs = keras.Input((seq_len, width), name="embeddings")
    x = inputs
    for i in range(blocks):
        attended = layers.MultiHeadAttention(heads, width // heads, name=f"block{i}_attention")(x, x)
        x = layers.LayerNormalization(epsilon=1e-12, name=f"block{i}_attention_norm")(
            layers.Add(name=f"block{i}_attention_add")([x, attended])
        )
        hidden = layers.Dense(ffn, activation="gelu", name=f"block{i}_ffn_intermediate")(x)
        hidden = layers.Dense(width, name=f"block{i}_ffn_output")(hidden)
        x = layers.LayerNormalization(epsilon=1e-12, name=f"block{i}_ffn_norm")(
            layers.Add(name=f"block{i}_ffn_add")([x, hidden])
        )
    name = "tiny_encoder" if tiny else "bert_base_encoder"
    return keras.Model(inputs, x, name=name), (seq_len, width)


def prune(model, fraction, structure, layers=None):
    """`fraction` of the units (or heads) of every group removed: the shrunk
    plain model and the largest difference from the masked model's output."""
    with warnings.catch_warnings():
        # Units() warns about the groups it keeps (pinned residual streams).
        warnings.simplefilter("ignore")
        sparse = tfs.sparsify(
            model, tfs.MagnitudePruning(tfs.ConstantSparsity(fraction, 0), structure=structure), layers=layers
        )
    tfs.update_masks(sparse, 0)
    small = tfs.shrink(sparse)
    return small, sparse


def output_difference(masked, small, input_shape):
    x = np.random.default_rng(1).normal(size=(1,) + tuple(input_shape)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = keras.ops.convert_to_numpy(tfs.strip(masked)(x, training=False))
    got = keras.ops.convert_to_numpy(small(x, training=False))
    return float(np.max(np.abs(reference - got)) / max(float(np.max(np.abs(reference))), 1e-30))


def resnet_variants(args):
    """Yields (variant, fraction, plain model, input shape, extra row fields)
    for ResNet-50."""
    keras.utils.set_random_seed(0)
    dense, shape = resnet(args.tiny, args.image_size)
    yield "dense", 0.0, dense, shape, {}
    for fraction in args.fractions:
        keras.utils.set_random_seed(0)
        model, _ = resnet(args.tiny, args.image_size)
        small, sparse = prune(model, fraction, tfs.Units())
        extra = {"max_rel_diff_vs_masked": output_difference(sparse, small, shape)}
        yield f"units_{fraction:.0%}", fraction, small, shape, extra
        del sparse, model


def encoder_variants(args):
    """Yields (variant, fraction, plain model, input shape, extra row fields)
    for the encoder."""
    keras.utils.set_random_seed(0)
    dense, shape = encoder(args.tiny, args.seq_len)
    analysis = dependency.analyze(dense, "units")
    ffn_layers = [p.name for g in analysis.groups for p in g.producers]
    groups = {"units": [f"{g.name} ({g.size})" for g in analysis.groups],
              "units_refused": sorted(analysis.refused),
              "heads": [f"{g.name} ({g.size})" for g in dependency.analyze(dense, "heads").groups]}
    yield "dense", 0.0, dense, shape, {"prunable_groups": groups}

    keras.utils.set_random_seed(0)
    model, _ = encoder(args.tiny, args.seq_len)
    ffn, sparse = prune(model, args.ffn_fraction, tfs.Units(), layers=ffn_layers)
    yield f"ffn_{args.ffn_fraction:.0%}", args.ffn_fraction, ffn, shape, {
        "max_rel_diff_vs_masked": output_difference(sparse, ffn, shape)}

    keras.utils.set_random_seed(0)
    model, _ = encoder(args.tiny, args.seq_len)
    heads, sparse = prune(model, args.head_fraction, tfs.Heads())
    yield f"heads_{args.head_fraction:.0%}", args.head_fraction, heads, shape, {
        "max_rel_diff_vs_masked": output_difference(sparse, heads, shape)}

    both, sparse = prune(ffn, args.head_fraction, tfs.Heads())  # `ffn` is consumed here.
    yield f"ffn_{args.ffn_fraction:.0%}+heads_{args.head_fraction:.0%}", None, both, shape, {
        "max_rel_diff_vs_masked": output_difference(sparse, both, shape)}


# --------------------------------------------------------------------------
# Measurements


def einsum_flops(op):
    """2 x the product of all index sizes of an `Einsum` op (None if the
    equation has an ellipsis or a shape is unknown)."""
    equation = op.get_attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    operands = equation.split("->")[0].split(",")
    if "." in equation:
        return None
    sizes = {}
    for labels, tensor in zip(operands, op.inputs):
        dims = tensor.shape.as_list()
        if len(dims) != len(labels) or any(d is None for d in dims):
            return None
        sizes.update(zip(labels, dims))
    return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))


def count_flops(model, input_shape):
    """FLOPs of one example: TF profiler + the Einsum ops it cannot count."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer
    from tensorflow.python.profiler import option_builder

    spec = tf.TensorSpec((1,) + tuple(input_shape), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = (
        option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiled = model_analyzer.profile(graph, options=options).total_float_ops
    einsums = [einsum_flops(op) for op in graph.get_operations() if op.type == "Einsum"]
    uncounted = sum(1 for f in einsums if f is None)
    return int(profiled) + sum(f for f in einsums if f), int(profiled), uncounted


def serving_function(model, directory):
    """Exports `model`, loads it with `tf.saved_model.load`, returns the XLA
    function over its `serve` endpoint (and the loaded object, to keep)."""
    import tensorflow as tf

    tfs.export_saved_model(model, directory)
    loaded = tf.saved_model.load(directory)
    serve = tf.function(lambda x: loaded.serve(x), jit_compile=True)
    return serve, loaded


def call_seconds(serve, x):
    start = time.perf_counter()
    result = serve(x)
    (result if not isinstance(result, dict) else next(iter(result.values()))).numpy()
    return time.perf_counter() - start


class LoadMeter:
    """CPU time used on the machine by other processes, as a fraction of all
    the cores over the wall time (from /proc/stat; None elsewhere)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / ticks  # minus idle, iowait
        own = os.times()
        return time.monotonic(), busy, own.user + own.system

    def other_fraction(self):
        end = self._sample()
        if end is None or self.start is None:
            return None
        wall = end[0] - self.start[0]
        others = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, others / (wall * os.cpu_count())) if wall > 0 else None


def measure_model(model_name, variants, args, tmp):
    import tensorflow as tf

    rows, servers = [], []
    for variant, fraction, model, shape, extra in variants:
        print(f"[{model_name}] {variant}: building, exporting, compiling ...", flush=True)
        flops, profiled, uncounted = count_flops(model, shape)
        row = {
            "model": model_name, "variant": variant, "fraction": fraction,
            "input_shape": list(shape), "params": int(model.count_params()),
            "flops": flops, "flops_tf_profiler": profiled, "einsum_ops_uncounted": uncounted,
            **extra,
        }
        start = time.perf_counter()
        serve, loaded = serving_function(model, os.path.join(tmp, model_name, variant.replace("+", "_")))
        row["export_load_s"] = time.perf_counter() - start
        rng = np.random.default_rng(0)
        inputs = {b: tf.constant(rng.normal(size=(b,) + tuple(shape)).astype("float32")) for b in args.batch_sizes}
        start = time.perf_counter()
        for x in inputs.values():
            for _ in range(args.warmup):
                call_seconds(serve, x)
        row["warmup_s"] = time.perf_counter() - start
        rows.append(row)
        servers.append((serve, loaded, inputs, {b: [] for b in args.batch_sizes}))
        del model
    meter = LoadMeter()
    for round_ in range(args.repeats):
        for row, (serve, _, inputs, times) in zip(rows, servers):
            for batch, x in inputs.items():
                calls = args.batch1_calls if batch == 1 else 1
                times[batch].extend(call_seconds(serve, x) for _ in range(calls))
        print(f"[{model_name}] round {round_ + 1}/{args.repeats}: " + ", ".join(
            f"{r['variant']} {statistics.median(s[3][args.batch_sizes[-1]]) * 1e3:.1f} ms"
            for r, s in zip(rows, servers)), flush=True)
    other_load = meter.other_fraction()
    dense = rows[0]
    for row, (_, _, _, times) in zip(rows, servers):
        row["other_load_fraction"] = other_load
        for batch, values in times.items():
            seconds = statistics.median(values)
            row[f"times_s_b{batch}"] = values
            row[f"median_s_b{batch}"] = seconds
            row[f"throughput_b{batch}"] = batch / seconds
        row["flop_reduction"] = dense["flops"] / row["flops"]
        row["param_reduction"] = dense["params"] / row["params"]
    for row in rows:
        for batch in args.batch_sizes:
            row[f"speedup_b{batch}"] = dense[f"median_s_b{batch}"] / row[f"median_s_b{batch}"]
    return rows


# --------------------------------------------------------------------------
# Reporting


def table(rows, batch_sizes=(1, 32)):
    small, large = batch_sizes[0], batch_sizes[-1]
    lines = [
        f"| model | variant | params | GFLOPs | batch-{small} latency (ms) | batch-{large} throughput (/s) "
        f"| speed-up b{small} | speed-up b{large} | FLOP reduction |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['params'] / 1e6:.2f} M | {r['flops'] / 1e9:.3f} "
            f"| {r[f'median_s_b{small}'] * 1e3:.2f} | {r[f'throughput_b{large}']:.1f} "
            f"| {r[f'speedup_b{small}']:.2f}x | {r[f'speedup_b{large}']:.2f}x | {r['flop_reduction']:.2f}x |"
        )
    return "\n".join(lines)


def machine():
    info = common.machine_info()
    info["processor_python"] = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = list(os.getloadavg())
    import tensorflow as tf

    info["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    info["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    info["xla"] = "tf.function(jit_compile=True) over the loaded SavedModel's serve"
    return info


def write(payload, out):
    import json

    if os.path.isdir(out) or out.endswith(os.sep):
        out = os.path.join(out, "shrink_speed_cpu.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(payload, f, indent=2)
    return out


def fractions(text):
    values = [float(v) for v in text.split(",") if v]
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1), got {text!r}")
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,encoder", type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument("--fractions", default="0.25,0.5,0.75", type=fractions,
                        help="ResNet-50: fractions of the units removed")
    parser.add_argument("--ffn_fraction", type=float, default=0.5, help="encoder: fraction of FFN units removed")
    parser.add_argument("--head_fraction", type=float, default=0.25, help="encoder: fraction of heads removed")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--batch1_calls", type=int, default=10, help="batch-1 calls per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per batch size (compilation)")
    parser.add_argument("--batch_sizes", default="1,32", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--seq_len", type=int, default=None, help="encoder sequence length (128; tiny: 16)")
    parser.add_argument("--image_size", type=int, default=224, help="ResNet-50 input size")
    parser.add_argument("--tiny", action="store_true", help="small models, for a smoke run")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result file (or folder)")
    args = parser.parse_args(argv)
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {MODELS}")
    if args.seq_len is None:
        args.seq_len = 16 if args.tiny else 128
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    payload = {"benchmark": "shrink_speed", "machine": machine(), "args": vars(args),
               "flops_convention": "2 per multiply-add, 1 per elementwise op; TF profiler "
                                   "float_operation() on the batch-1 graph, plus Einsum ops "
                                   "counted from their equation", "results": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            variants = resnet_variants(args) if name == "resnet50" else encoder_variants(args)
            payload["results"].extend(measure_model(name, variants, args, tmp))
            keras.utils.clear_session()
            payload["wall_s"] = time.perf_counter() - started
            if hasattr(os, "getloadavg"):
                payload["machine"]["loadavg_at_end"] = list(os.getloadavg())
            path = write(payload, args.out)  # After each model: a partial run keeps what finished.
    print()
    print(table(payload["results"], args.batch_sizes))
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
