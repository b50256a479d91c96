"""The ResNet-50 reference task's parts: model, configs, learning rate, input
pipeline (real TFDS code on mocked ImageNet) and the CLI's error lines."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from keras import ops

import tf_sparsity as tfs
from tf_sparsity_models import cli as tfs_cli
from tf_sparsity_models.resnet50 import configs
from tf_sparsity_models.resnet50 import data
from tf_sparsity_models.resnet50 import lr_schedule
from tf_sparsity_models.resnet50 import model as model_lib
from tf_sparsity_models.common import runner as train

pytestmark = pytest.mark.tensorflow


def tiny_resnet(**kwargs):
    return model_lib.resnet50(
        num_classes=10, image_size=32, blocks=(1, 1, 1, 1), base_width=8, **kwargs
    )


def mock_imagenet(num_examples=12):
    return tfds.testing.mock_data(
        num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE
    )


# Model.


def test_resnet50_has_the_reference_parameter_count():
    model = model_lib.resnet50()
    # ResNet-50 v1.5 without convolution biases: 25,557,032 trainable
    # weights (the Cloud TPU reference's count).
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 25_557_032
    kernels = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(kernels) == 54  # 53 convolutions and the classifier
    assert model.output_shape == (None, 1000)


def test_block_layout_matches_resnet_v1_5():
    model = tiny_resnet()
    # v1.5: the stride is on the 3x3 convolution, not on the first 1x1.
    assert model.get_layer("stage2_block1_conv1").strides == (1, 1)
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage2_block1_projection").strides == (2, 2)
    bn = model.get_layer("stage1_block1_conv2_bn")
    assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)
    # Each residual branch starts as zero (its last gamma is 0).
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.get_layer("stage3_block1_conv3_bn").gamma), 0.0
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.get_layer("stage3_block1_conv2_bn").gamma), 1.0
    )
    fc = ops.convert_to_numpy(model.get_layer("fc").kernel)
    assert fc.std() == pytest.approx(0.01, rel=0.1)
    # L2 on every convolution and the classifier kernel (17 + 1), in the
    # reference's convention wd * |w|^2 / 2.
    assert len(model.losses) == 18
    conv1 = model.get_layer("conv1")
    expected = 1e-4 / 2 * float(ops.sum(ops.square(conv1.kernel)))
    assert float(conv1.kernel_regularizer(conv1.kernel)) == pytest.approx(expected, rel=1e-5)


def test_logits_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tiny_resnet()
        logits = model(np.zeros((2, 32, 32, 3), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert logits.dtype == "float32"


def test_first_conv_dense_and_classifier_target_by_option():
    method = tfs.METHODS["magnitude"].recipe(0.9, 100)
    distribution = model_lib.sparsity_distribution(
        dense_first_conv=True, last_layer_sparsity=0.8
    )
    sparse = tfs.sparsify(tiny_resnet(), method, distribution=distribution)
    targets = {path: wrapper.target_sparsity for path, wrapper in tfs.sparse_layers(sparse)}
    assert "conv1" not in targets
    assert targets["fc"] == pytest.approx(0.8)
    assert targets["stage4_block1_conv2"] == pytest.approx(0.9)
    assert len(targets) == 17


# Learning rate.


def test_learning_rate_warms_up_then_steps_down():
    schedule = lr_schedule.WarmupPiecewiseDecay(0.4, steps_per_epoch=100)
    rate = lambda step: float(schedule(step))
    assert rate(0) == 0.0
    assert rate(250) == pytest.approx(0.2)  # half-way through 5 warm-up epochs
    assert rate(500) == pytest.approx(0.4)
    assert rate(2999) == pytest.approx(0.4)
    assert rate(3000) == pytest.approx(0.04)
    assert rate(6000) == pytest.approx(0.004)
    assert rate(8000) == pytest.approx(0.0004)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, lr_schedule.WarmupPiecewiseDecay)
    assert restored.get_config() == schedule.get_config()


# Configs.


def test_a_preset_for_every_paper_configuration():
    for method in ("magnitude", "random", "variational_dropout", "l0"):
        for sparsity in configs.PAPER_SPARSITIES:
            config = configs.make_config(f"{method}_{round(sparsity * 100)}")
            assert (config.method, config.sparsity) == (method, sparsity)
    assert configs.make_config("dense").method == "dense"
    assert configs.make_config("tiny").blocks == (1, 1, 1, 1)


def test_paper_settings_come_from_the_released_runs_and_scale_with_steps():
    config = configs.make_config("magnitude_90")
    assert (config.steps, config.batch_size, config.learning_rate) == (128_000, 1024, 0.4)
    # standard_threshold_0.9_40000_76000_2000_0.1
    assert (config.begin_step, config.end_step, config.frequency) == (40_000, 76_000, 2_000)
    assert config.label_smoothing == 0.1
    short = configs.make_config("magnitude_95", {"steps": 12_800})
    # standard_threshold_0.95_40000_68000_2000_0.0, at a tenth of the steps
    assert (short.begin_step, short.end_step, short.frequency) == (4_000, 6_800, 200)
    assert short.label_smoothing == 0.0
    vd = configs.make_config("variational_dropout_50")
    assert vd.method_args["log_sigma2_init"] == -15.0
    assert vd.method_args["threshold"] == 0.5
    assert vd.method_args["kl_weight"] == pytest.approx(7.80538368534e-09)
    assert (vd.begin_step, vd.end_step, vd.frequency) == (8_000, 68_000, None)
    # Explicit values win over the paper's.
    mine = configs.make_config("magnitude_90", {"begin_step": 10, "label_smoothing": 0.0})
    assert (mine.begin_step, mine.end_step, mine.label_smoothing) == (10, 76_000, 0.0)


def test_methods_are_built_from_their_recipes():
    config = configs.make_config("tiny", {"method": "random", "sparsity": 0.9, "seed": 3})
    method = train.make_method(config)
    assert isinstance(method, tfs.RandomPruning)
    assert method.schedule.final_sparsity == pytest.approx(0.9)
    assert method.schedule.end_step == config.end_step
    assert method.get_config()["seed"] == 3


def test_paper_presets_build_variational_dropout_and_l0():
    vd = train.make_method(configs.make_config("variational_dropout_90"), 1_281_167)
    assert isinstance(vd, tfs.VariationalDropout)
    # variational_dropout_0.9_20000_68000_7.80538368534e-08_0.0
    assert vd.kl_weight == pytest.approx(7.80538368534e-08)
    assert (vd.threshold, vd.log_sigma2_init) == (0.5, -15.0)
    assert (vd.ramp.begin_step, vd.ramp.end_step) == (20_000, 68_000)
    l0 = train.make_method(configs.make_config("l0_90"), 1_281_167)
    assert isinstance(l0, tfs.L0Regularization)
    with pytest.raises(ValueError, match="`frequency` is for pruning methods"):
        train.make_method(configs.make_config("l0_90", {"frequency": 10}), 1_281_167)


def test_values_parse_from_text():
    assert configs.parse_value("blocks", "1,2,3,4") == (1, 2, 3, 4)
    assert configs.parse_value("synthetic_data", "true") is True
    assert configs.parse_value("data_dir", "none") is None
    assert configs.parse_value("method_args", '{"kl_weight": 1e-8}') == {"kl_weight": 1e-8}
    assert configs.parse_assignment("steps=12") == ("steps", 12)


# Input pipeline: the real TFDS code on mocked ImageNet.


def test_imagenet_pipeline_shapes_and_normalization():
    with mock_imagenet():
        dataset = data.load("imagenet2012")
        assert dataset.info.num_classes == 1000 and dataset.info.jpeg
        # Two replicas in sync: each gets half the global batch of 8.
        context = tf.distribute.InputContext(num_replicas_in_sync=2)
        train_data = dataset.train_dataset_fn(8, 64, shuffle_buffer=16)(context)
        images, labels = next(iter(train_data))
        eval_batches = list(dataset.eval_dataset_fn(5, 64)(None))
    assert images.shape == (4, 64, 64, 3) and images.dtype == tf.float32
    assert labels.shape == (4, 1000)
    np.testing.assert_allclose(tf.reduce_sum(labels, axis=-1), 1.0)
    # Pixels in [0, 255] (bicubic overshoot clipped) normalized by the
    # ImageNet mean and std lie in [-2.118, 2.640]; the mock images are
    # uniform noise, so both ends are nearly reached.
    lowest = min((0.0 - m) / s for m, s in zip(data.MEAN_RGB, data.STDDEV_RGB))
    highest = max((255.0 - m) / s for m, s in zip(data.MEAN_RGB, data.STDDEV_RGB))
    assert lowest - 1e-5 <= float(tf.reduce_min(images)) < -1.5
    assert 1.5 < float(tf.reduce_max(images)) <= highest + 1e-5
    assert [b[0].shape[0] for b in eval_batches] == [5, 5, 2]  # 12 examples
    assert eval_batches[0][0].shape[1:] == (64, 64, 3)


def test_eval_preprocessing_crops_the_centre():
    # A 256x320 image whose centre 224x224 is white and the rest black: the
    # eval crop (224/256 of the short side) sees only white.
    image = np.zeros((256, 320, 3), np.uint8)
    image[16:240, 48:272] = 255
    encoded = tf.io.encode_png(image)
    processed = data.preprocess_encoded_for_eval(encoded, 224)
    white = data.normalize(tf.fill([3], 255.0))
    np.testing.assert_allclose(processed[100, 100], white, atol=1e-4)
    np.testing.assert_allclose(processed[0, 0], white, atol=0.05)


def test_training_on_mocked_imagenet_through_tfds(tmp_path):
    config = configs.make_config(
        "tiny",
        {"synthetic_data": False, "steps": 2, "checkpoint_every": 2, "eval_steps": 1,
         "batch_size": 4, "eval_batch_size": 4, "shuffle_buffer": 8, "export": False},
    )
    with mock_imagenet():
        result = train.run(config, str(tmp_path), verbose=0, print_fn=lambda *a: None)
    assert result.row["dataset"] == "imagenet2012" and result.row["steps"] == 2
    assert 0.0 <= result.row["top1"] <= result.row["top5"] <= 1.0
    assert result.model.output_shape == (None, 1000)


@pytest.mark.slow
def test_variational_dropout_trains_the_tiny_resnet(tmp_path):
    # L0 takes the same path (a regularized method with a penalty ramp).
    method = "variational_dropout"
    config = configs.make_config(
        "tiny", {"method": method, "sparsity": 0.9, "steps": 4, "checkpoint_every": 2,
                 "eval_steps": 1, "export": False},
    )
    result = train.run(config, str(tmp_path), verbose=0, print_fn=lambda *a: None)
    assert result.row["steps"] == 4 and result.row["method"] == method
    assert 0.0 <= result.row["global_sparsity"] <= 1.0
    assert np.isfinite(result.row["eval_loss"])
    assert len(tfs.sparse_layers(result.model)) == 18


# One clear error line for bad values.


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--method", "pruning"], "unknown method 'pruning'"),
        (["--method", "magnitude", "--sparsity", "1.0"], "sparsity must be below 1.0"),
        (["--sparsity", "0.5"], "sparsity 0.5 with method 'dense'"),
        (["--config", "huge"], "unknown config preset 'huge'"),
        (["--set", "stepz=3"], "unknown config key 'stepz'"),
        (["--steps", "many"], "bad value 'many' for steps"),
        (["--task", "mnist"], "unknown task 'mnist'"),
        (["--strategy", "gpu"], "unknown strategy 'gpu'"),
        (["--data_dir", "/no/such/dir"], "--data_dir /no/such/dir does not exist"),
    ],
)
def test_bad_values_give_one_error_line(flags, message, tmp_path, capsys):
    task = [] if "--task" in flags else ["--task", "resnet50"]
    argv = ["train", *task, "--model_dir", str(tmp_path), *flags]
    assert tfs_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and message in err[0], err[0]
