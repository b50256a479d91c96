"""Transformer (base) on WMT14 English-German as a `tf-sparsity train` task."""

import os

import keras
import tensorflow as tf

import tf_sparsity as tfs
from tf_sparsity_models.common import task as task_lib
from tf_sparsity_models.transformer import bleu as bleu_lib
from tf_sparsity_models.transformer import configs
from tf_sparsity_models.transformer import data as data_lib
from tf_sparsity_models.transformer import export as export_lib
from tf_sparsity_models.transformer import loss as loss_lib
from tf_sparsity_models.transformer import lr_schedule
from tf_sparsity_models.transformer import model as model_lib
from tf_sparsity_models.transformer import vocab as vocab_lib
from tf_sparsity_models.transformer.translator import Translator


class TransformerTask(task_lib.Task):
    """The paper's Transformer runs: English in, German out, BLEU."""

    name = "transformer"
    config_class = configs.TransformerConfig
    outputs = (vocab_lib.FILENAME,)
    presets = configs.PRESETS
    main_metric = "bleu_tokenized"

    def resolve(self, config):
        return configs.resolve(config)

    def load_data(self, config, model_dir):
        if config.strategy == "multi_worker" and not config.synthetic_data and config.vocabulary is None:
            if not tf.io.gfile.exists(os.path.join(model_dir, vocab_lib.FILENAME)):
                raise ValueError(
                    "multi-worker runs need a vocabulary built beforehand (every "
                    "worker must use the same one): pass --vocabulary FILE, made "
                    "with `python -m tf_sparsity_models.transformer.vocab`"
                )
        data = data_lib.load(config, model_dir)
        path = data.info.vocabulary_path
        own_copy = os.path.join(model_dir, vocab_lib.FILENAME)
        if path is not None and path != own_copy and not tf.io.gfile.exists(own_copy):
            # The run keeps the vocabulary it was trained with.
            tf.io.gfile.makedirs(model_dir)
            tf.io.gfile.copy(path, own_copy)
        return data

    def build_model(self, config, data):
        model = model_lib.Transformer(
            vocabulary_size=data.info.vocabulary_size,
            num_layers=config.num_layers,
            hidden_size=config.hidden_size,
            num_heads=config.num_heads,
            filter_size=config.filter_size,
            dropout=config.dropout,
        )
        return model_lib.build(model)

    def distribution(self, config):
        return model_lib.sparsity_distribution(config.embedding_sparsity)

    def compile(self, model, config, data):
        """Adam (0.9, 0.997, 1e-9) on t2t's warm-up and rsqrt decay,
        label-smoothed cross-entropy averaged over real tokens, and token
        accuracy."""
        schedule = lr_schedule.TransformerSchedule(
            config.learning_rate, config.warmup_steps, config.hidden_size
        )
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=schedule,
                beta_1=config.adam_beta1,
                beta_2=config.adam_beta2,
                epsilon=config.adam_epsilon,
            ),
            loss=loss_lib.SmoothedCrossEntropy(config.label_smoothing),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")],
            jit_compile=config.jit_compile,
            steps_per_execution=config.steps_per_execution,
        )

    def train_dataset(self, strategy, config, data, resumed_epoch):
        # tf.data positions are not checkpointed: see `resumed_data`.
        shuffle_seed, skip_steps = task_lib.resumed_data(config, resumed_epoch)
        return strategy.distribute_datasets_from_function(
            data.train_dataset_fn(
                config.batch_size,
                config.max_length,
                shuffle_seed=shuffle_seed,
                shuffle_buffer=config.shuffle_buffer,
                skip_steps=skip_steps,
                deterministic=config.deterministic,
            )
        )

    def eval_dataset(self, strategy, config, data):
        if config.eval_steps == 0:
            return None, None
        multi_worker = config.strategy == "multi_worker"
        if multi_worker and config.eval_steps is None:
            raise ValueError(
                "length-bucketed evaluation batches have no known count: pass "
                "--eval_steps for multi-worker runs"
            )
        # Evaluation batches hold about eval_batch_size sentences of 32 tokens.
        tokens = config.eval_batch_size * 32
        eval_fn = data.eval_dataset_fn(tokens, repeat=multi_worker)
        return strategy.distribute_datasets_from_function(eval_fn), config.eval_steps

    def evaluate_more(self, model, config, data, print_fn=print):
        """BLEU of the test set's translations (and, for variational dropout
        with `vd_thresholds`, BLEU and sparsity at each threshold)."""
        if config.bleu_examples == 0:
            return {"bleu": None, "bleu_tokenized": None}
        limit = config.bleu_examples
        sources, references = data.test_sentences(limit)
        language = config.target_language

        def scores(current_model):
            translator = Translator(
                current_model, data, config.beam_size, config.alpha,
                config.extra_decode_length, config.eval_batch_size, config.jit_compile,
            )
            return bleu_lib.score(translator(sources), references, language)

        result = scores(model)
        print_fn(
            f"BLEU {result.bleu:.2f} ({result.signature}), tokenized BLEU "
            f"{result.bleu_tokenized:.2f} on {len(sources)} sentences"
        )
        extra = {
            "bleu": result.bleu,
            "bleu_tokenized": result.bleu_tokenized,
            "bleu_signature": result.signature,
            "bleu_sentences": len(sources),
        }
        if config.vd_thresholds:
            rows = tfs.sweep_threshold(
                model,
                lambda m: scores(m).bleu_tokenized,
                thresholds=tuple(config.vd_thresholds),
            )
            extra["threshold_sweep"] = [
                {"threshold": r.setting, "global_sparsity": r.global_sparsity, "bleu_tokenized": r.metric}
                for r in rows
            ]
        return extra

    def metrics(self, results):
        return {
            "bleu": results.get("bleu"),
            "bleu_tokenized": results.get("bleu_tokenized"),
            "token_accuracy": results.get("token_accuracy"),
            "eval_loss": results.get("loss"),
        }

    def row_extras(self, results):
        """Non-metric fields of the row (BLEU's signature, the VD sweep)."""
        keys = ("bleu_signature", "bleu_sentences", "threshold_sweep")
        return {k: results[k] for k in keys if k in results}

    def export(self, model, export_dir, config, data):
        # Synthetic data has no vocabulary: only the token-id endpoint.
        export_lib.export_for_serving(
            model, export_dir, getattr(data, "proto", None), config.beam_size, config.alpha, config.extra_decode_length
        )


TASK = TransformerTask()
