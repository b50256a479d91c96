"""LeNet-300-100 and LeNet-5, the small networks of the pruning literature."""

import keras
from keras import layers


def lenet_300_100(num_classes=10, input_dim=784):
    """The fully connected LeNet-300-100 (LeCun et al., 1998).

    Input shape: `(batch, input_dim)`. Output: logits `(batch, num_classes)`.
    """
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            layers.Dense(300, activation="relu", name="fc1"),
            layers.Dense(100, activation="relu", name="fc2"),
            layers.Dense(num_classes, name="fc3"),
        ],
        name="lenet_300_100",
    )


def lenet5(num_classes=10, input_shape=(28, 28, 1)):
    """The convolutional LeNet-5 (Caffe variant: 20 and 50 filters, 500 units).

    Input shape: `(batch, 28, 28, 1)` images. Output: logits.
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(20, 5, activation="relu", name="conv1"),
            layers.MaxPooling2D(2),
            layers.Conv2D(50, 5, activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu", name="fc1"),
            layers.Dense(num_classes, name="fc2"),
        ],
        name="lenet5",
    )
