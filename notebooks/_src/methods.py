# install: |
# %% [markdown]
# # The four methods, side by side
#
# *The State of Sparsity in Deep Neural Networks* asked a simple question: at a
# given sparsity, which method keeps the most accuracy? Its answer, on
# ResNet-50 and the Transformer: plain **magnitude pruning** matches or beats the
# more complex **variational dropout** (VD) and **L0 regularization** at most
# sparsities, VD pulls ahead only at the very highest, L0 is hard to tune, and
# **random pruning** is the floor every method must clear.
#
# Here we redo the comparison in miniature: LeNet-300-100 on the MNIST subset,
# each method at several sparsities, drawn as an **accuracy-vs-sparsity frontier**
# by `tf-sparsity report`. Then the knobs of the two regularized methods:
# `tfs.sweep_weight`, `tfs.sweep_threshold` and `tfs.choose`.

# %% [parameters]
SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.98]   # targets of the pruning methods
EPOCHS = 20
TRAIN_IMAGES = None                  # None: all 4,000 training images of the subset
VD_FACTORS = [0.03, 0.1, 0.3, 1.0]   # VD's kl_weight, in units of 1 / N_train
L0_FACTORS = [0.3, 1.0, 3.0, 10.0]   # L0's l0_weight, in units of 1 / N_train
THRESHOLDS = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]   # VD log-alpha thresholds to re-evaluate at
OUT_DIR = "methods_output"

# %%
import math
import os
import time

import keras
import matplotlib.pyplot as plt
import tensorflow as tf
from IPython.display import Image, Markdown, display

import tf_sparsity as tfs
from tf_sparsity.demo.data import mnist_subset
from tf_sparsity.reporting.rows import make_row, write_row

tf.get_logger().setLevel("ERROR")
(x_train, y_train), (x_test, y_test) = mnist_subset()
data = ((x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES]), (x_test, y_test))
N = len(data[0][0])
RUNS = os.path.join(OUT_DIR, "runs")
print(f"{N} training images, {EPOCHS} epochs per run")

# %% [markdown]
# ## Training runs
#
# `run(method, sparsity)` trains LeNet-300-100 (Adam 1e-3, batch 128) with a
# method built by `tfs.make_method`, which for the pruning methods places a
# gradual schedule as the paper did. It returns the trained model and a
# **result row**, the JSON record every tf_sparsity run writes (the demo, the
# reference tasks, the benchmarks) and `tf-sparsity report` reads: task, method,
# target and reached sparsity, steps, wall time, the metrics and the per-layer
# sparsities.

# %%
from tf_sparsity.demo.lenet import lenet_300_100

STEPS = EPOCHS * math.ceil(N / 128)
rows = []


def run(method, sparsity=0.0, seed=0, **method_args):
    keras.utils.set_random_seed(seed)
    model = lenet_300_100()
    callbacks = []
    if method != "dense":
        model = tfs.sparsify(model, tfs.make_method(method, sparsity, STEPS, num_examples=N,
                                                    seed=seed, **method_args))
        callbacks = [tfs.SparsityCallback()]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    model.fit(*data[0], batch_size=128, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    wall_time = time.time() - start
    report = tfs.sparsity_summary(model, print_fn=None)
    row = make_row(task="lenet300", method=method, target_sparsity=sparsity,
                   global_sparsity=report.global_sparsity, steps=STEPS, wall_time_s=wall_time,
                   main_metric="accuracy", metrics={"accuracy": evaluate(model)}, seed=seed,
                   hparams={"epochs": EPOCHS, **method_args}, layers=report.as_dict()["layers"])
    return model, row


def evaluate(model):
    return model.evaluate(*data[1], verbose=0)[1]


def record(run_id, row):
    """Writes RUNS/run_id/result.json and keeps the row."""
    row["run_id"] = run_id
    write_row(os.path.join(RUNS, run_id), row)
    rows.append(row)
    print(f"{run_id:28} sparsity {row['global_sparsity']:7.2%}  accuracy {row['accuracy']:.4f}")


record("dense", run("dense")[1])
for method in ["magnitude", "random"]:
    for sparsity in SPARSITIES:
        _, row = run(method, sparsity)
        record(f"{method}_{sparsity}", row)
        assert abs(row["global_sparsity"] - sparsity) < 1e-3

# %% [markdown]
# ## Variational dropout and L0: sweep the regularizer weight
#
# VD and L0 have no sparsity target. Their regularizer weight sets the
# trade-off: larger weights prune more and, past a point, cost accuracy. The paper
# swept it; so do we. `tfs.sweep_weight(train_fn, weights, evaluate_fn)` trains
# once per weight and returns rows of (setting, sparsity reached, metric).
# A good scale is `factor / N_train`, where N_train is the number of training
# examples (the penalty is a KL divergence or an expected count over the whole
# dataset, the loss a per-example mean).

# %%
def nearest_target(sparsity):
    """The target a regularized run counts for in the report (None: far from all)."""
    best = min(SPARSITIES, key=lambda t: abs(math.log((1 - sparsity + 1e-9) / (1 - t))))
    ratio = (1 - sparsity) / (1 - best)
    return best if 1 / 1.5 <= ratio <= 1.5 else None


trained = {}


def sweeper(method, argument):
    def train(weight):
        model, row = run(method, **{argument: weight})
        row["target_sparsity"] = nearest_target(row["global_sparsity"])
        record(f"{method}_{weight * N:g}_over_N", row)
        trained[(method, weight)] = model
        return model
    return train


vd_rows = tfs.sweep_weight(train=sweeper("variational_dropout", "kl_weight"),
                           weights=[f / N for f in VD_FACTORS], evaluate=evaluate)
l0_rows = tfs.sweep_weight(train=sweeper("l0", "l0_weight"),
                           weights=[f / N for f in L0_FACTORS], evaluate=evaluate)
print()
print(tfs.tuning.format_rows(vd_rows, "kl_weight"))
print(tfs.tuning.format_rows(l0_rows, "l0_weight"))

# %% [markdown]
# `tfs.choose(rows, target)` answers "which setting gives me 90%?": the most
# accurate row at or above the target, or an error naming the sparsest setting
# when none gets there (then try larger weights or more training).

# %%
for name, sweep in [("variational_dropout", vd_rows), ("l0", l0_rows)]:
    try:
        best = tfs.choose(sweep, 0.9)
        print(f"{name}: weight {best.setting * N:g}/N reaches {best.global_sparsity:.2%} "
              f"at accuracy {best.metric:.4f}")
    except ValueError as error:
        print(f"{name}: {error}")

# %% [markdown]
# ## The frontier, drawn by `tf-sparsity report`
#
# `tf-sparsity report DIRS --out DIR` reads every result row below `DIRS`, averages
# over seeds, and writes `report.md` (a method x sparsity table) and
# `TASK_frontier.png`. Each point sits at the sparsity a run **reached**, so VD and
# L0 points land where their weight took them; the report's tables file them under
# the nearest target. `--layers RUN` adds a per-layer bar chart of one run: here
# the sparsest VD run: VD learns *where* to prune, and its layers end up at
# different sparsities.

# %%
vd_run = max((r for r in rows if r["method"] == "variational_dropout"), key=lambda r: r["global_sparsity"])
vd_run_id = vd_run["run_id"]
REPORT = os.path.join(OUT_DIR, "report")
!tf-sparsity report {RUNS} --out {REPORT} --layers {vd_run_id}
assert _exit_code == 0
print(sorted(os.listdir(REPORT)))

# %%
display(Image(filename=os.path.join(REPORT, "lenet300_frontier.png")))
display(Image(filename=os.path.join(REPORT, "lenet300_variational_dropout_layers.png")))

# %%
display(Markdown(open(os.path.join(REPORT, "report.md")).read()))

# %% [markdown]
# With the full settings, expect what the README's benchmark table records (3
# seeds): magnitude at or above dense up to 90%, VD close behind, L0 below, and
# random collapsing from 95% on. One short run per point is noisy: use several
# seeds (`run(..., seed=s)`) before trusting a gap of a point.
#
# ## VD's second knob: the threshold
#
# A VD weight is dropped at inference when its log alpha (noise-to-signal ratio)
# exceeds a threshold, 3 by default. The threshold can change **after** training,
# without retraining: `tfs.sweep_threshold(model, evaluate_fn, thresholds)`
# re-evaluates at each value and restores the original, and
# `tfs.set_threshold(model, t)` sets one. Lower thresholds prune more.

# %%
weight = min(vd_rows, key=lambda r: abs(r.global_sparsity - 0.9)).setting   # the run nearest 90%
model = trained[("variational_dropout", weight)]
threshold_rows = tfs.sweep_threshold(model, evaluate, THRESHOLDS)
print(tfs.tuning.format_rows(threshold_rows, "threshold"))
sparsities = [r.global_sparsity for r in threshold_rows]
assert sparsities == sorted(sparsities, reverse=True), "a lower threshold prunes at least as much"

fig, axes = plt.subplots(figsize=(6, 3.2))
axes.plot(THRESHOLDS, [r.metric for r in threshold_rows], "o-", label="accuracy")
axes.plot(THRESHOLDS, sparsities, "s--", label="sparsity")
axes.set(xlabel="log-alpha threshold", ylim=(0, 1),
         title=f"one VD model (kl_weight {weight * N:g}/N), re-evaluated")
axes.legend()
plt.show()

# %% [markdown]
# ## L0's knobs
#
# L0's gates move slowly: with Adam, a gate's log alpha moves about one learning
# rate per step and closes only below about -2.4, so short runs barely prune.
# `make_method("l0", ...)` sets `gate_lr_multiplier=10` (the gates learn 10x faster)
# and a penalty ramp over the first 40% of training. If L0 stays dense, raise the
# weight, train longer, or raise `gate_lr_multiplier`:
#
# ```python
# tfs.make_method("l0", 0.9, total_steps, num_examples=N, l0_weight=3 / N, gate_lr_multiplier=30)
# ```
#
# **Which method should I use?** Start with magnitude pruning: one target, exact
# sparsity, no tuning, the best or near-best accuracy. Try VD when you need the
# highest sparsities and can afford a sweep (its steps cost about 2x). Random
# pruning is a baseline, not a method to deploy.
