"""Walking and rewriting the layer tree of any Keras model.

Layers are reached in two ways. Children of a Functional or Sequential model
are nodes of its graph: replacing one means cloning the graph
(`keras.models.clone_model`). Every other layer (a subclassed model, a custom
layer, the EinsumDense projections inside MultiHeadAttention) holds its
sublayers in attributes, lists or dicts: those slots are replaced in place,
keeping Keras's tracker consistent so weights, saving and training see the new
layer.

A node's *key path* is a tuple of steps from the root, each a JSON-friendly
list: `["layer", name]` for a graph child, `["attr", name]` for an attribute,
`["item", name, key]` for a list/tuple/dict entry and `["tracked", index]` for
a sublayer held only by the tracker. Rebuilding a model from its config gives
the same key paths, which is how nested sparse layers are saved and restored.
"""

import collections

import keras

try:  # Functional is not exported publicly; every Keras 3 release has it here.
    from keras.src.models.functional import Functional as _Functional
except ImportError:  # pragma: no cover
    _Functional = None

Node = collections.namedtuple("Node", ["layer", "key_path", "name_path", "owner"])

# Private attributes that reference layers but are not ownership slots.
_SKIPPED_ATTRIBUTES = frozenset(
    {
        "_layers",
        "_tracker",
        "_operations",
        "_functional",
        "_inbound_nodes",
        "_outbound_nodes",
        "_input_layers",
        "_output_layers",
        "_nodes",
        "_compiled_trainable_state",
    }
)


def is_graph_model(layer):
    """True for Functional and Sequential models (children are graph nodes)."""
    if isinstance(layer, keras.Sequential):
        return True
    return _Functional is not None and isinstance(layer, _Functional)


def _is_layer(value):
    return isinstance(value, keras.layers.Layer) and not isinstance(
        value, keras.layers.InputLayer
    )


def children(owner):
    """Yields `(step, child)` for each direct sublayer of `owner`."""
    seen = set()
    if is_graph_model(owner):
        for child in owner.layers:
            if _is_layer(child):
                seen.add(id(child))
                yield ("layer", child.name), child
    for name, value in list(vars(owner).items()):
        if name in _SKIPPED_ATTRIBUTES or name.startswith("__"):
            continue
        if _is_layer(value):
            seen.add(id(value))
            yield ("attr", name), value
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if _is_layer(item):
                    seen.add(id(item))
                    yield ("item", name, index), item
        elif isinstance(value, dict):
            for key, item in value.items():
                if _is_layer(item) and isinstance(key, (str, int)):
                    seen.add(id(item))
                    yield ("item", name, key), item
    for index, item in enumerate(getattr(owner, "_layers", ())):
        if _is_layer(item) and id(item) not in seen:
            yield ("tracked", index), item


def walk(root, stop=None):
    """Yields a `Node` for every layer under `root` (not `root` itself).

    Each layer is visited once, at the first path that reaches it.

    Args:
        root: a Keras layer or model.
        stop: optional predicate; the walk does not descend into layers for
            which it is true (they are still yielded).
    """
    visited = {id(root)}
    stack = [(root, (), ())]
    while stack:
        owner, key_path, name_path = stack.pop(0)
        if owner is not root and stop is not None and stop(owner):
            continue
        for step, child in children(owner):
            if id(child) in visited:
                continue
            visited.add(id(child))
            node = Node(
                child, key_path + (step,), name_path + (child.name,), owner
            )
            yield node
            stack.append((child, node.key_path, node.name_path))


def path_string(name_path):
    return "/".join(name_path)


def transform(root, replace_fn, stop=None):
    """Rewrites the layer tree in place, replacing layers chosen by `replace_fn`.

    Every slot that holds a replaced layer is changed: attributes, lists and
    dicts of subclassed models and custom layers, and the graph of
    Functional and Sequential models (their nodes now call the new layer), so
    the model keeps its class, its methods and its shared layers: a layer
    used in several places is replaced by one new layer everywhere.

    Args:
        root: the model (or layer) to rewrite.
        replace_fn: `fn(layer, key_path, name_path)` returning a new layer to
            put in place of `layer`, or None to keep it (and descend into it).
        stop: optional predicate; the walk does not descend into layers
            for which it is true (`replace_fn` still sees them).

    Returns:
        A dict mapping `id(old)` to the new layer, for every replacement.
    """
    replacements = {}
    visited = {id(root)}
    stack = [(root, (), ())]
    while stack:
        owner, key_path, name_path = stack.pop(0)
        for step, child in list(children(owner)):
            if id(child) in replacements:
                _replace_slot(owner, step, child, replacements[id(child)])
                continue
            if id(child) in visited:
                continue
            visited.add(id(child))
            child_key, child_names = key_path + (step,), name_path + (child.name,)
            new = replace_fn(child, child_key, child_names)
            if new is None:
                if stop is None or not stop(child):
                    stack.append((child, child_key, child_names))
                continue
            replacements[id(child)] = new
            _rewire_graph_nodes(child, new)
            _replace_slot(owner, step, child, new)
    if replacements:
        # The new layers may hold the old ones (a wrapper its inner layer):
        # leave those alone.
        new_ids = {id(layer) for layer in replacements.values()}
        owners = [root] + [
            node.layer
            for node in walk(root, stop=lambda layer: id(layer) in new_ids)
            if id(node.layer) not in new_ids
        ]
        for owner in owners:
            _replace_in_tracker_all(owner, replacements)
            _replace_in_graph_operations(owner, replacements)
            _reset_compiled_functions(owner)
    return replacements


def _rewire_graph_nodes(old, new):
    """Makes every graph node that called `old` call `new` instead."""
    from keras.src.ops.node import KerasHistory

    for node in old._inbound_nodes:
        node.operation = new
        for tensor in node.outputs:
            history = tensor._keras_history
            tensor._keras_history = KerasHistory(
                new, history.node_index, history.tensor_index
            )
    object.__setattr__(new, "_inbound_nodes", list(old._inbound_nodes))
    object.__setattr__(new, "_outbound_nodes", list(old._outbound_nodes))
    object.__setattr__(old, "_inbound_nodes", [])
    object.__setattr__(old, "_outbound_nodes", [])


def _replace_in_graph_operations(owner, replacements):
    """Replaces layers in the operation lists of a Functional (or of the
    Functional a Sequential runs)."""
    if isinstance(owner, keras.Sequential):
        owner = getattr(owner, "_functional", None)
    if _Functional is None or not isinstance(owner, _Functional):
        return
    swap = lambda ops: [replacements.get(id(op), op) for op in ops]
    object.__setattr__(owner, "_operations", swap(owner._operations))
    for depth, operations in owner._operations_by_depth.items():
        owner._operations_by_depth[depth] = swap(operations)
    # Node keys are "<id(operation)>_ib-<index>" (keras.src.ops.function).
    renamed = {f"{old_id}_ib-": f"{id(new)}_ib-" for old_id, new in replacements.items()}
    for key in list(owner._nodes):
        prefix = key[: key.index("_ib-") + 4]
        if prefix in renamed:
            owner._nodes.discard(key)
            owner._nodes.add(renamed[prefix] + key[len(prefix):])


def _replace_in_tracker_all(owner, replacements):
    for old_id, new in replacements.items():
        _replace_in_tracker(owner, old_id, new)


def _replace_in_tracker(owner, old_id, new):
    """Replaces a sublayer in `owner._layers` and its tracker's store (a
    Sequential keeps them as two lists)."""
    tracker = getattr(owner, "_tracker", None)
    stores = [getattr(owner, "_layers", None)]
    if tracker is not None and "layers" in tracker.config:
        stores.append(tracker.config["layers"][1])
        ids = tracker.stored_ids["layers"]
        if old_id in ids:
            ids.discard(old_id)
            ids.add(id(new))
    done = set()
    for store in stores:
        if store is None or id(store) in done:
            continue
        done.add(id(store))
        for index, item in enumerate(store):
            if id(item) == old_id:
                # Plain item assignment: the tracker was updated above.
                list.__setitem__(store, index, new)


def _replace_slot(owner, step, old, new):
    kind = step[0]
    if kind == "attr":
        object.__setattr__(owner, step[1], new)
    elif kind == "item":
        container = getattr(owner, step[1])
        if isinstance(container, tuple):
            items = list(container)
            items[step[2]] = new
            object.__setattr__(owner, step[1], type(container)(items))
        elif isinstance(container, list):
            # Plain item assignment: the tracker is updated separately.
            list.__setitem__(container, step[2], new)
        else:
            dict.__setitem__(container, step[2], new)
    # "layer" (graph) and "tracked" slots are replaced by `transform`'s
    # pass over operation lists and trackers.


# State derived from the layer tree, rebuilt on next use after it changes:
# Keras's traced steps and tf_sparsity's cached mask updater.
_DERIVED_ATTRIBUTES = ("train_function", "test_function", "predict_function")
UPDATER_ATTRIBUTE = "_tf_sparsity_mask_updater"


def _reset_compiled_functions(model):
    """Forgets traced functions and cached updaters after the tree changed."""
    for name in _DERIVED_ATTRIBUTES:
        if hasattr(model, name):
            object.__setattr__(model, name, None)
    if UPDATER_ATTRIBUTE in vars(model):
        object.__delattr__(model, UPDATER_ATTRIBUTE)
