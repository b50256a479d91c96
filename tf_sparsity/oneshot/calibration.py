"""Calibration data and the block-by-block pass of one-shot pruning.

`calibration_batches` turns what users have (arrays, tensors, a
`tf.data.Dataset`, any iterable of batches, raw strings for a keras-hub
model with a preprocessor) into a list of model-input batches.

`run_blocks` walks a model's graph in order and hands each block that holds
layers still to prune to a callback, as SparseGPT's and Wanda's reference
code do for the decoder layers of an LLM: the block's inputs are computed
from the calibration batches through the already-pruned earlier blocks,
the callback reads its layers' inputs and prunes them, and the block is
run again so the next block sees the pruned outputs. Values of the graph
are kept only while a later node still needs them, so memory holds about
one block's activations (plus anything a residual path carries past it),
not the model's. In a functional or Sequential model (keras-hub backbones
and task models included) a block is one top-level layer call, and nested
functional models are walked the same way; a model without a graph
(subclassed) is one block.

The graph walk follows Keras's own `Functional._run_through_graph`
(`_nodes_by_depth`, `node.arguments.fill_in`, `_standardize_inputs`):
private Keras attributes, read only here.
"""

import collections

import keras
import numpy as np
from keras import ops

from tf_sparsity import tree


def calibration_batches(model, data, num_samples, batch_size):
    """The calibration data as a list of model-input batches.

    Args:
        model: the model the batches are for.
        data: a NumPy array, tensor or dict of them (split into batches of
            `batch_size`), a `tf.data.Dataset` or any iterable of batches
            (elements that are `(x, y)` or `(x, y, sample_weight)` tuples
            give their `x`), or a list of strings. Strings go through
            `model.preprocessor` (keras-hub task models); integer token ids
            for a model taking `{"token_ids", "padding_mask"}` get a
            padding mask of ones.
        num_samples: the number of samples (rows) to use in all.
        batch_size: rows per batch when `data` is split here.

    Returns:
        A non-empty list of batches with `num_samples` rows in all (fewer if
        the data has fewer).
    """
    if _is_array_like(data) or isinstance(data, dict) or _is_string_list(data):
        source = _split(data, batch_size)
    elif hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        source = iter(data)
    else:
        raise TypeError(
            "prune_oneshot: `calibration_data` must be an array, a tensor, a "
            "dict of them, a tf.data.Dataset or an iterable of input batches; "
            f"got {type(data).__name__}."
        )
    batches, rows = [], 0
    for batch in source:
        if rows >= num_samples:
            break
        if isinstance(batch, tuple) and len(batch) in (2, 3):
            batch = keras.utils.unpack_x_y_sample_weight(batch)[0]
        batch = _model_inputs(model, batch)
        take = min(_num_rows(batch), num_samples - rows)
        batches.append(keras.tree.map_structure(lambda x: x[:take], batch))
        rows += take
    if not batches:
        raise ValueError("prune_oneshot: `calibration_data` holds no batch.")
    return batches


def _is_array_like(value):
    return isinstance(value, np.ndarray) or ops.is_tensor(value)


def _is_string_list(value):
    return isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value)


def _split(data, batch_size):
    if _is_string_list(data):
        data = np.asarray(data, dtype=object)
    total = _num_rows(data)
    for start in range(0, total, batch_size):
        yield keras.tree.map_structure(lambda x: x[start : start + batch_size], data)


def _num_rows(batch):
    return int(keras.tree.flatten(batch)[0].shape[0])


def _is_text(batch):
    if isinstance(batch, np.ndarray):
        return batch.dtype.kind in "OSU"
    return ops.is_tensor(batch) and str(getattr(batch, "dtype", "")) in ("string", "<dtype: 'string'>")


def _model_inputs(model, batch):
    """What `model` takes for one calibration batch (see
    `calibration_batches`)."""
    if _is_text(batch):
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None:
            raise ValueError(
                f"prune_oneshot: `calibration_data` is text, but model "
                f"'{model.name}' has no `preprocessor` to turn it into inputs. "
                "Pass token ids (or the model's input arrays) instead."
            )
        texts = batch.tolist() if isinstance(batch, np.ndarray) else batch
        return keras.utils.unpack_x_y_sample_weight(preprocessor(texts))[0]
    expected = getattr(model, "input", None)
    if (
        isinstance(expected, dict)
        and {"token_ids", "padding_mask"} <= set(expected)
        and _is_array_like(batch)
    ):
        token_ids = ops.convert_to_numpy(batch)
        if token_ids.dtype.kind not in "iu":
            raise TypeError(
                f"prune_oneshot: model '{model.name}' takes token ids, but "
                f"`calibration_data` has dtype {token_ids.dtype}."
            )
        return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}
    return batch


def run_blocks(model, batches, pending, process_block):
    """Runs `batches` through `model` block by block (module docstring).

    Args:
        model: the model.
        batches: list of model-input batches.
        pending: set of ids of the layers still to prune; `process_block`
            removes the ones it prunes. The walk stops once it is empty.
        process_block: `fn(block, run) -> outputs`: `block` is the layer or
            model about to run, holding pending layers; `run()` runs it on
            every batch's inputs and returns the list of per-batch outputs.
            It prunes what it must and returns `run()`'s outputs after
            pruning.
    """
    graph = _graph(model)
    if graph is None:
        process_block(model, lambda: [model(batch) for batch in batches])
        return
    inputs = [graph._standardize_inputs(batch) for batch in batches]
    _walk(graph, [list(values) for values in zip(*inputs)], pending, process_block)


def _graph(layer):
    """The Functional graph of a functional or Sequential model, or None."""
    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None)
    return layer if tree.is_graph_model(layer) else None


def _holds_pending(layer, pending):
    if id(layer) in pending:
        return True
    return any(id(node.layer) in pending for node in tree.walk(layer))


def _walk(graph, input_values, pending, process_block):
    """Walks one Functional graph; returns its per-batch flat outputs, or
    None when every pending layer was pruned before the end."""
    values = {id(tensor): batches for tensor, batches in zip(graph.inputs, input_values)}
    nodes = tree.graph_nodes(graph)
    uses = collections.Counter(id(t) for node in nodes for t in node.input_tensors)
    uses.update(id(t) for t in graph.outputs)
    num_batches = len(input_values[0]) if input_values else 0
    for node in nodes:
        if not pending:
            return None
        if any(id(t) not in values for t in node.input_tensors):
            continue
        calls = [
            node.arguments.fill_in({key: batches[b] for key, batches in values.items()})
            for b in range(num_batches)
        ]
        operation = node.operation
        nested = _graph(operation)

        def run(operation=operation, calls=calls):
            return [operation(*args, **kwargs) for args, kwargs in calls]

        if not _holds_pending(operation, pending):
            outputs = run()
        elif nested is not None and id(operation) not in pending:
            inner_inputs = [nested._standardize_inputs(args[0]) for args, _ in calls]
            flat = _walk(nested, [list(v) for v in zip(*inner_inputs)], pending, process_block)
            if flat is None:
                return None
            outputs = [keras.tree.pack_sequence_as(nested._outputs_struct, list(o)) for o in zip(*flat)]
        else:
            outputs = process_block(operation, run)
        del calls
        flat_outputs = [keras.tree.flatten(output) for output in outputs]
        for position, tensor in enumerate(node.outputs):
            values[id(tensor)] = [flat[position] for flat in flat_outputs]
        for tensor in node.input_tensors:
            uses[id(tensor)] -= 1
            if uses[id(tensor)] <= 0:
                values.pop(id(tensor), None)
    return [values.get(id(t)) for t in graph.outputs]
