"""Bit-identical training: seeds, and deterministic ops on each backend.

Seeding alone does not make two runs equal: TensorFlow picks kernels and
`tf.data` runs parallel map functions in whatever order is fastest, so
floating-point sums come out in different orders. Deterministic ops cost
speed: on TensorFlow, `tf.data` map functions holding random ops (image
augmentation) run serially, prefetching may stop, and a few GPU kernels are
slower or refuse to run (`UnimplementedError`); on JAX, GPU scatter and
reductions are slower.
"""

import os

import keras

#: Makes XLA's GPU kernels deterministic (JAX reads it when it starts).
XLA_GPU_DETERMINISM = "--xla_gpu_deterministic_ops=true"


def enable(seed, deterministic=True):
    """Seeds Python, NumPy and the backend with `seed` and, with
    `deterministic`, makes ops deterministic from now on.

    - TensorFlow: `tf.config.experimental.enable_op_determinism()`, which
      also makes every `tf.data` pipeline deterministic. It stays on for the
      rest of the process: TensorFlow has no public switch to turn it off.
    - JAX: adds `--xla_gpu_deterministic_ops=true` to `XLA_FLAGS`. JAX reads
      it when its GPU backend starts, so on GPU set it in the environment
      before the process starts (on CPU, JAX is deterministic already).

    Args:
        seed: the seed of `keras.utils.set_random_seed`.
        deterministic: False only seeds (runs may then differ in the last
            bits, which training amplifies).
    """
    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if XLA_GPU_DETERMINISM not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {XLA_GPU_DETERMINISM}".strip()
