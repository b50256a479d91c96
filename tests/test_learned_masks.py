"""Lottery-ticket and train-from-scratch variants from one pruned run, on a
tiny configuration of the ResNet-50 task."""

import os

import numpy as np
import pytest
from keras import ops

import tf_sparsity as tfs
from tf_sparsity_models.common import config as config_lib
from tf_sparsity_models.common import runner
from tf_sparsity_models.common import task as task_lib

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

QUIET = dict(verbose=0, print_fn=lambda *a: None)


def make(**overrides):
    return config_lib.make_config(task_lib.get("resnet50"), "tiny", {"export": False, **overrides})


def masks_of(model):
    return {kernel.path: ops.convert_to_numpy(kernel.state.mask) for kernel in tfs.sparse_kernels(model)}


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("pruned"))
    config = make(method="magnitude", sparsity=0.75, rewind_step=8)
    result = runner.run(config, model_dir, **QUIET)
    return model_dir, result


def test_a_pruning_run_saves_what_the_variants_need(pruned_run):
    model_dir, result = pruned_run
    for name in (runner.INIT_WEIGHTS, runner.rewind_weights(8), runner.MASKS_FILENAME):
        assert os.path.exists(os.path.join(model_dir, name)), name
    masks, meta = tfs.read_masks(os.path.join(model_dir, runner.MASKS_FILENAME))
    assert meta["run"]["method"] == "magnitude"
    for key, mask in masks_of(result.model).items():
        np.testing.assert_array_equal(masks[key], mask > 0.5)


@pytest.mark.parametrize("variant", ["lottery", "scratch_e", "scratch_b", "distribution_only"])
def test_each_variant_trains_the_learned_masks(pruned_run, variant, tmp_path):
    model_dir, source = pruned_run
    config = make(mask_from=model_dir, variant=variant)
    assert config.method == "fixed_mask" and config.sparsity == 0.75
    result = runner.run(config, str(tmp_path), **QUIET)
    row = result.row
    assert row["method"] == variant and row["variant"] == variant and row["mask_from"] == model_dir
    assert row["steps"] == (2 * source.row["steps"] if variant == "scratch_b" else source.row["steps"])
    learned, trained = masks_of(source.model), masks_of(result.model)
    for key, mask in trained.items():
        if variant == "distribution_only":
            assert (mask == 0).sum() == (learned[key] == 0).sum(), key
        else:
            np.testing.assert_array_equal(mask, learned[key], err_msg=key)  # Unchanged by training.
    assert row["global_sparsity"] == pytest.approx(source.row["global_sparsity"], abs=1e-6)


def test_lottery_starts_from_the_saved_weights_at_every_kept_position(pruned_run):
    model_dir, _ = pruned_run
    for rewind in (None, 8):
        config = make(mask_from=model_dir, variant="lottery", rewind_step=rewind)
        task = task_lib.get("resnet50")
        data = task.load_data(config, model_dir)
        model = runner.build_sparse_model(task, config, data)
        runner.prepare_variant(model, config)
        reference = runner.build_sparse_model(task, make(method="magnitude", sparsity=0.75), data)
        name = runner.INIT_WEIGHTS if rewind is None else runner.rewind_weights(rewind)
        reference.load_weights(os.path.join(model_dir, name))
        for kernel, saved in zip(tfs.sparse_kernels(model), tfs.sparse_kernels(reference)):
            mask = ops.convert_to_numpy(kernel.state.mask) > 0.5
            values = ops.convert_to_numpy(kernel.variable)
            expected = ops.convert_to_numpy(saved.variable)
            np.testing.assert_array_equal(values[mask], expected[mask], err_msg=kernel.path)


def test_variant_flags_are_checked(pruned_run, tmp_path):
    model_dir, _ = pruned_run
    with pytest.raises(ValueError, match="go together"):
        make(variant="lottery")
    with pytest.raises(ValueError, match="no result.json"):
        make(mask_from=str(tmp_path), variant="scratch_e")
    with pytest.raises(ValueError, match="rewind_step is for the lottery"):
        make(mask_from=model_dir, variant="scratch_e", rewind_step=8)
    with pytest.raises(ValueError, match="no rewind_3.weights.h5"):
        config = make(mask_from=model_dir, variant="lottery", rewind_step=3)
        runner.run(config, str(tmp_path / "run"), **QUIET)
