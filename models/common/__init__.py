"""What every reference task shares: the task interface and registry, run
configs, the runner, `tf.distribute` strategies and TFDS reading."""
