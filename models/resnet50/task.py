"""ResNet-50 on ImageNet as a `tf-sparsity train` task."""

import dataclasses

import keras

from tf_sparsity_models.common import task as task_lib
from tf_sparsity_models.resnet50 import configs
from tf_sparsity_models.resnet50 import data as data_lib
from tf_sparsity_models.resnet50 import export as export_lib
from tf_sparsity_models.resnet50 import lr_schedule
from tf_sparsity_models.resnet50 import model as model_lib


class ResNet50Task(task_lib.Task):
    """The paper's ResNet-50 runs: images in, top-1/top-5 accuracy out."""

    name = "resnet50"
    config_class = configs.ResNet50Config
    presets = configs.PRESETS
    main_metric = "top1"

    def resolve(self, config):
        return configs.resolve(config)

    def stretch(self, config, factor):
        """Also stretches the learning rate's warm-up and decay epochs."""
        config = super().stretch(config, factor)
        return dataclasses.replace(
            config,
            warmup_epochs=config.warmup_epochs * factor,
            decay_epochs=tuple(round(e * factor) for e in config.decay_epochs),
        )

    def load_data(self, config, model_dir):
        dataset = data_lib.load(
            config.dataset,
            data_dir=config.data_dir,
            manual_dir=config.manual_dir,
            eval_split=config.eval_split,
            synthetic=config.synthetic_data,
            num_classes=config.num_classes,
            seed=config.seed,
        )
        # Epochs of the learning-rate schedule count this many examples.
        train_examples = (
            config.train_examples
            or dataset.info.train_examples
            or data_lib.IMAGENET_TRAIN_EXAMPLES
        )
        dataset.info = dataclasses.replace(dataset.info, train_examples=train_examples)
        return dataset

    def build_model(self, config, data):
        return model_lib.resnet50(
            num_classes=data.info.num_classes,
            image_size=config.image_size,
            blocks=config.blocks,
            base_width=config.base_width,
            weight_decay=config.weight_decay,
        )

    def distribution(self, config):
        return model_lib.sparsity_distribution(
            dense_first_conv=config.dense_first_conv,
            last_layer_sparsity=config.last_layer_sparsity,
        )

    def compile(self, model, config, data):
        """Nesterov momentum on the warm-up + step-decay learning rate (epochs
        counted over the training examples), cross-entropy with label
        smoothing on one-hot labels, top-1 and top-5 accuracy."""
        schedule = lr_schedule.WarmupPiecewiseDecay(
            peak_learning_rate=config.learning_rate,
            steps_per_epoch=data.info.train_examples / config.batch_size,
            warmup_epochs=config.warmup_epochs,
            decay_epochs=config.decay_epochs,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(
                learning_rate=schedule, momentum=config.momentum, nesterov=True
            ),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config.label_smoothing
            ),
            metrics=[
                keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
            ],
            jit_compile=config.jit_compile,
            steps_per_execution=config.steps_per_execution,
        )

    def train_dataset(self, strategy, config, data, resumed_epoch):
        # tf.data positions are not checkpointed: see `resumed_data`.
        shuffle_seed, skip_steps = task_lib.resumed_data(config, resumed_epoch)
        return strategy.distribute_datasets_from_function(
            data.train_dataset_fn(
                config.batch_size,
                config.image_size,
                shuffle_seed=shuffle_seed,
                shuffle_buffer=config.shuffle_buffer,
                skip_steps=skip_steps,
                deterministic=config.deterministic,
            )
        )

    def eval_dataset(self, strategy, config, data):
        if config.eval_steps == 0:
            return None, None
        steps = config.eval_steps
        multi_worker = config.strategy == "multi_worker"
        if config.synthetic_data:
            steps = steps or 1
        elif multi_worker and steps is None:
            # Workers evaluate in lockstep: give all the same number of steps
            # over repeated shards, so none runs out of data first.
            if not data.info.eval_examples:
                raise ValueError(
                    "the evaluation split's size is unknown: pass --eval_steps "
                    "for multi-worker runs"
                )
            steps = max(data.info.eval_examples // config.eval_batch_size, 1)
        eval_fn = data.eval_dataset_fn(
            config.eval_batch_size,
            config.image_size,
            drop_remainder=config.strategy == "tpu",
            repeat=multi_worker,
        )
        return strategy.distribute_datasets_from_function(eval_fn), steps

    def metrics(self, results):
        return {
            "top1": results.get("top1"),
            "top5": results.get("top5"),
            "eval_loss": results.get("loss"),
        }

    def export(self, model, export_dir, config, data):
        export_lib.export_for_serving(model, export_dir, config.image_size)


TASK = ResNet50Task()
