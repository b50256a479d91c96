"""ResNet-50 on ImageNet, as in the paper."""
