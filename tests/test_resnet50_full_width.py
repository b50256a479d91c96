"""Full-width ResNet-50 (all 54 sparsifiable layers) trains a few steps with
each available method, at a small image size."""

import math

import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity_models.resnet50 import configs
from tf_sparsity_models.resnet50 import data
from tf_sparsity_models.common import runner
from tf_sparsity_models.resnet50 import task as task_lib

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

SPARSITY = 0.9


@pytest.mark.parametrize("method", ["dense", "magnitude", "random"])
def test_full_width_resnet50_trains_with_each_method(method):
    overrides = {"method": method, "image_size": 32, "steps": 2, "batch_size": 2,
                 "synthetic_data": True, "jit_compile": False}
    if method != "dense":
        # One mask update, to the target, at step 1. Global scope (one
        # ranking of all 25M weights) because compiling a per-layer update
        # of 54 kernels takes over a minute on a CPU; the tiny runs cover
        # per-layer pruning.
        overrides.update(
            sparsity=SPARSITY, begin_step=1, end_step=2, frequency=1,
            method_args={"initial_sparsity": SPARSITY, "scope": "global"},
        )
    config = configs.make_config(overrides=overrides)
    images = data.SyntheticImages(1000)
    model = runner.build_sparse_model(task_lib.TASK, config, images)
    task_lib.TASK.compile(model, config, images)
    # Eager steps: tracing the full graph would cost more than the steps.
    model.run_eagerly = True
    batches = images.train_dataset_fn(2, 32)(None)
    callbacks = [] if method == "dense" else [tfs.SparsityCallback()]
    history = model.fit(
        batches, steps_per_epoch=2, epochs=1, callbacks=callbacks, shuffle=False, verbose=0
    )

    assert math.isfinite(history.history["loss"][-1])
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 2
    report = tfs.sparsity_summary(model, print_fn=None)
    assert len(report.layers) == 54
    assert report.size == 25_502_912  # every kernel, first and last included
    if method == "dense":
        assert report.global_sparsity < 1e-6
        assert tfs.sparse_layers(model) == []
    else:
        assert len(tfs.sparse_layers(model)) == 54
        assert report.global_sparsity == pytest.approx(SPARSITY, abs=1e-6)
