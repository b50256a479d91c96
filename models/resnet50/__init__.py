"""ResNet-50 on ImageNet, as in the paper.

Modules, one job each:

- `model`: the ResNet-50 v1.5 functional model and which layers stay dense;
- `data`: TFDS (or synthetic) input pipelines, sharded per input pipeline;
- `lr_schedule`: the warm-up and step-decay learning rate;
- `configs`: `ResNet50Config`, the paper's presets and released-run settings;
- `task`: the `Task` that `tf-sparsity train --task resnet50` runs through
  the shared runner (`tf_sparsity_models.common.runner`);
- `export`: the stripped SavedModel for TF Serving.
"""
