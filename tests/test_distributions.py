import keras
import pytest
from keras import layers

import tf_sparsity as tfs
from tf_sparsity import distributions
from tf_sparsity import masks as mask_ops
from tests import models

pytestmark = pytest.mark.core


def convnet():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, name="conv1"),
            layers.Conv2D(32, 3, name="conv2"),
            layers.Conv2D(64, 3, name="conv3"),
            layers.Flatten(),
            layers.Dense(128, name="fc1"),
            layers.Dense(10, name="fc2"),
        ]
    )


def targets_of(model):
    return {path: w.target_sparsity for path, w in tfs.sparse_layers(model)}


def global_after_final_update(model):
    tfs.update_masks(model, 0)
    return tfs.sparsity_summary(model, print_fn=None)


def test_erk_reaches_the_global_target_with_more_sparsity_in_big_layers():
    model = convnet()
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(tfs.OneShot(0.9)), distribution=tfs.ERK())
    targets = targets_of(sparse)
    assert targets["conv3"] > targets["conv2"]
    assert targets["fc1"] > targets.get("fc2", 0.0)
    report = global_after_final_update(sparse)
    assert report.global_sparsity == pytest.approx(0.9, abs=1e-4)


def test_erk_saturated_layers_become_dense_and_the_rest_is_re_solved():
    model = convnet()
    sparse = tfs.sparsify(model, tfs.MagnitudePruning(tfs.OneShot(0.5)), distribution=tfs.ERK())
    # At 50% the small first conv and last layer would exceed density 1.
    assert "conv1" not in targets_of(sparse)
    report = global_after_final_update(sparse)
    assert report.global_sparsity == pytest.approx(0.5, abs=1e-4)
    assert all(row.sparsity < 1.0 for row in report.layers)


def test_erk_keeps_dense_layers_in_the_count_and_errors_when_unreachable():
    sparse = tfs.sparsify(
        convnet(), tfs.MagnitudePruning(tfs.OneShot(0.8)), distribution=tfs.ERK(dense=["conv3"])
    )
    assert "conv3" not in targets_of(sparse)
    assert global_after_final_update(sparse).global_sparsity == pytest.approx(0.8, abs=1e-4)
    # fc1 holds 97% of the weights: kept dense, 50% is out of reach.
    with pytest.raises(ValueError, match="ERK cannot reach global sparsity 0.5.*fc1"):
        tfs.sparsify(convnet(), tfs.MagnitudePruning(tfs.OneShot(0.5)), distribution=tfs.ERK(dense=["fc1"]))


def test_per_layer_solves_the_unmatched_layers():
    sparse = tfs.sparsify(
        convnet(),
        tfs.MagnitudePruning(tfs.OneShot(0.8)),
        distribution=tfs.PerLayer({"conv1": 0.0, "fc2": 0.5}),
    )
    targets = targets_of(sparse)
    assert "conv1" not in targets and targets["fc2"] == 0.5
    assert targets["conv2"] == targets["conv3"] == targets["fc1"]
    assert global_after_final_update(sparse).global_sparsity == pytest.approx(0.8, abs=1e-4)


def test_per_layer_errors_when_targets_cannot_reach_the_schedule():
    with pytest.raises(ValueError, match="PerLayer cannot reach global sparsity 0.9"):
        tfs.sparsify(
            convnet(),
            tfs.MagnitudePruning(tfs.OneShot(0.9)),
            distribution=tfs.PerLayer({"fc1": 0.5}),
        )
    with pytest.raises(ValueError, match="global sparsity of 0.5000.*0.9"):
        tfs.sparsify(
            convnet(), tfs.MagnitudePruning(tfs.OneShot(0.9)), distribution=tfs.PerLayer({".*": 0.5})
        )
    with pytest.raises(ValueError, match="must be in \\[0, 1\\)"):
        tfs.PerLayer({"fc1": 1.0})


def test_uniform_targets_give_layers_their_own_sparsity_and_scale_with_the_schedule():
    schedule = tfs.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=5)
    sparse = tfs.sparsify(
        models.sequential(),
        tfs.MagnitudePruning(schedule),
        distribution=tfs.Uniform(targets={"logits": 0.4}),
    )
    assert targets_of(sparse) == {"hidden": 0.8, "logits": 0.4}
    tfs.update_masks(sparse, 5)  # Halfway in time: s = 0.8 * (1 - 0.5**3) = 0.7
    rows = {r.path: r for r in tfs.sparsity_summary(sparse, print_fn=None).layers}
    s = schedule.sparsity(5)
    assert rows["hidden"].size - rows["hidden"].nonzero == mask_ops.num_to_prune(s, 128)
    assert rows["logits"].size - rows["logits"].nonzero == mask_ops.num_to_prune(s * 0.5, 64)


def test_erk_scores_follow_the_formula():
    assert distributions.erdos_renyi_score([(100, 10)]) == pytest.approx(110 / 1000)
    assert distributions.erdos_renyi_score([(3, 3, 8, 16)]) == pytest.approx(30 / 1152)


@pytest.mark.parametrize("dist", [tfs.Uniform(dense=["a"], targets={"b": 0.5}), tfs.ERK(dense=["c"]), tfs.PerLayer({"x": 0.2})])
def test_distributions_serialize(dist):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(dist))
    assert restored.get_config() == dist.get_config()
