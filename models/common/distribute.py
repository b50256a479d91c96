"""`tf.distribute` strategies by name, and which worker writes the outputs."""

import json
import os

import tensorflow as tf


def make_strategy(name, tpu=None):
    """Creates the strategy a run trains under.

    Args:
        name: "default" (one device), "mirrored" (all local GPUs),
            "multi_worker" (`MultiWorkerMirroredStrategy`, cluster from the
            `TF_CONFIG` environment variable) or "tpu" (`TPUStrategy`).
        tpu: for "tpu", the TPU name or grpc:// address given to
            `TPUClusterResolver` ("local" on a TPU VM; None: found from the
            environment, as on Cloud TPU).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: unknown name, no `TF_CONFIG` for "multi_worker", or no
            TPU found.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multi_worker needs the TF_CONFIG environment "
                "variable (the cluster and this worker's task), e.g. "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
        # Must run before any other TensorFlow op of the process.
        return _NestedReduceMultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise ValueError(
                f"no TPU found (tpu={tpu!r}): {str(error).splitlines()[0]}"
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(
        f"unknown strategy {name!r} (known: default, mirrored, multi_worker, "
        "tpu)"
    )


def task(strategy):
    """`(task_type, task_id)` of this process, or `(None, None)`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """Whether this process writes the run's shared outputs.

    The chief is the "chief" task, or worker 0 of a cluster without one
    (TensorFlow's convention); single-process strategies are always chief.
    """
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    if task_type != "worker" or task_id != 0:
        return False
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return "chief" not in jobs


def is_chief_task(strategy_name):
    """`is_chief` from the `TF_CONFIG` environment variable alone, for when
    no strategy has been made (a multi-worker run that has nothing to do)."""
    if strategy_name != "multi_worker":
        return True
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError:
        return True
    task_info = tf_config.get("task") or {}
    task_type, task_id = task_info.get("type"), task_info.get("index", 0)
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in (tf_config.get("cluster") or {})


def worker_dir(model_dir, strategy):
    """Where this process writes what only it needs.

    The chief writes into `model_dir`; other workers of a multi-worker run
    write their own copies (backups, logs) into `model_dir/workers/TYPE_ID`
    so no two processes write the same file.
    """
    if is_chief(strategy):
        return model_dir
    task_type, task_id = task(strategy)
    return os.path.join(model_dir, "workers", f"{task_type}_{task_id}")


class _NestedReduceMultiWorkerMirroredStrategy(
    tf.distribute.MultiWorkerMirroredStrategy
):
    """`MultiWorkerMirroredStrategy` whose `reduce` works the way Keras 3's
    `fit` calls it.

    Keras 3.15's TensorFlow trainer makes two calls that plain
    `MultiWorkerMirroredStrategy.reduce` rejects, so `fit` fails for every
    model under this strategy (keras-team/keras#20585):

    - `_maybe_symbolic_build` reduces the first batch, a tuple `(x, y)`,
      with `reduce("MEAN", (x, y), axis=None)`; the strategy tries to make
      one tensor of the tuple ("Attempt to convert a value (PerReplica:...)
      with an unsupported type ... to a Tensor"). `MirroredStrategy`
      reduces such a structure element by element.
    - `reduce_per_replica` reduces each scalar log (loss, metrics) with
      `reduce("MEAN", value, axis=0)`, and a scalar has no axis 0 ("Invalid
      reduction dimension 0 for input with 0 dimensions"). The mean over
      replicas, which `MirroredStrategy` computes there, is `axis=None`.

    This class does both: element by element (the same order on every
    worker, so the collectives match), and `axis=None` for scalars.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(element):
            element_axis = axis
            if axis is not None and _rank(self, element) == 0:
                element_axis = None
            return parent.reduce(reduce_op, element, element_axis)

        return tf.nest.map_structure(reduce_one, value)


def _rank(strategy, value):
    local = strategy.experimental_local_results(value)
    return local[0].shape.rank if local else None
