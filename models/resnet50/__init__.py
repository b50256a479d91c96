"""ResNet-50 on ImageNet, as in the paper.

Modules, one job each:

- `model`: the ResNet-50 v1.5 functional model and which layers stay dense;
- `data`: TFDS (or synthetic) input pipelines, sharded per input pipeline;
- `lr_schedule`: the warm-up and step-decay learning rate;
- `configs`: `TrainConfig`, the paper's presets and released-run settings;
- `train`: one run end to end (`run`), as `tf-sparsity train` does it;
- `export`: the stripped SavedModel for TF Serving.
"""
