"""What every reference task shares: the task interface and registry, run
configs, the runner, `tf.distribute` strategies, TFDS reading, the library's
method names (without loading Keras) and the command line's argparse types."""
