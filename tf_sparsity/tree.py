"""Walking and rewriting the layer tree of any Keras model.

Layers are reached in two ways. Children of a Functional or Sequential model
are nodes of its graph: replacing one makes every graph node that called it
call the new layer. Every other layer (a subclassed model, a custom layer,
the EinsumDense projections inside MultiHeadAttention) holds its sublayers in
attributes or in (nested) lists, tuples and dicts: those slots are replaced
in place, keeping Keras's tracker consistent so weights, saving and training
see the new layer.

A node's *key path* is a tuple of steps from the root, each a JSON-friendly
list: `["layer", name]` for a graph child, `["attr", name]` for an attribute,
`["item", name, key, ...]` for an entry of a list, tuple or dict held in
attribute `name` (one key per level of nesting) and `["tracked", index]` for
a sublayer held only by the tracker. Key paths are the same on every backend,
and rebuilding a model from its config gives the same key paths, which is how
nested sparse layers are saved and restored.
"""

import collections
import gc

import keras
from keras.src.utils import tracking

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
        "nnx_operations",
        "_nnx_op_mapping",
    }
)
# TensorFlow's `Trackable` keeps its own records of a layer's attributes
# (`_self_unconditional_dependency_names` and others); they exist on that
# backend only, so walking them would make key paths differ between backends.
_TRACKABLE_PREFIX = "_self_"

_GRAPH_TYPES = (keras.Sequential,) + ((_Functional,) if _Functional else ())


def is_graph_model(layer):
    """True for Functional and Sequential models (children are graph nodes)."""
    return isinstance(layer, _GRAPH_TYPES)


def graph_nodes(graph):
    """The call nodes of a Functional graph, in the order they run (input
    nodes left out)."""
    return [
        node
        for depth in sorted(graph._nodes_by_depth, reverse=True)
        for node in graph._nodes_by_depth[depth]
        if node.operation is not None and not node.is_input
    ]


def _is_layer(value):
    return isinstance(value, keras.layers.Layer) and not isinstance(
        value, keras.layers.InputLayer
    )


def _is_slot_key(key):
    return isinstance(key, (str, int))


class _Member:
    """The "key" of a set element: sets have no stable keys, so a layer in
    one is reached as a "tracked" child and replaced by identity."""

    def __init__(self, element):
        self.element = element


def _contained_layers(value, every=False, _open=None):
    """Yields `(keys, layer)` for each layer inside a (nested) container.

    Lists, tuples and dicts with string or integer keys are descended into,
    not layers. With `every`, also dicts with other keys and sets (keys are
    then not JSON-friendly: `_Member`s for set elements).
    """
    if isinstance(value, dict):
        entries = [
            (key, item) for key, item in value.items() if every or _is_slot_key(key)
        ]
    elif isinstance(value, (list, tuple)):
        entries = list(enumerate(value))
    elif every and isinstance(value, (set, frozenset)):
        entries = [(_Member(item), item) for item in value]
    else:
        return
    _open = set() if _open is None else _open
    if id(value) in _open:  # A container holding itself.
        return
    _open.add(id(value))
    for key, item in entries:
        if _is_layer(item):
            yield (key,), item
        elif isinstance(item, (dict, list, tuple, set, frozenset)):
            for keys, layer in _contained_layers(item, every, _open):
                yield (key,) + keys, layer
    _open.discard(id(value))


def _slot_attributes(owner):
    """`(name, value)` of the attributes of `owner` that can hold sublayers."""
    for name, value in list(vars(owner).items()):
        if name in _SKIPPED_ATTRIBUTES or name.startswith(("__", _TRACKABLE_PREFIX)):
            continue
        yield name, value


def children(owner):
    """Yields `(step, child)` for each direct sublayer of `owner`.

    A child held in several slots is yielded once per slot (a layer found
    only in Keras's tracker, once, as a "tracked" child).
    """
    seen = set()
    if is_graph_model(owner):
        for child in owner.layers:
            if _is_layer(child):
                seen.add(id(child))
                yield ("layer", child.name), child
    for name, value in _slot_attributes(owner):
        if _is_layer(value):
            seen.add(id(value))
            yield ("attr", name), value
            continue
        for keys, item in _contained_layers(value):
            seen.add(id(item))
            yield ("item", name) + keys, item
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


def layer_at(root, key_path):
    """The layer at `key_path` under `root`, or None if there is none.

    Any slot that holds the layer is a valid path to it, not only the first
    one `walk` reports.
    """
    layer = root
    for step in key_path:
        step = tuple(step)
        layer = next((child for s, child in children(layer) if s == step), None)
        if layer is None:
            return None
    return layer


def path_string(name_path):
    return "/".join(name_path)


def transform(root, replace_fn, stop=None):
    """Rewrites the layer tree in place, replacing layers chosen by `replace_fn`.

    Every slot that holds a replaced layer is changed: attributes, (nested)
    lists, tuples and dicts of subclassed models and custom layers, and the
    graph of Functional and Sequential models (their nodes now call the new
    layer), so the model keeps its class, its methods and its shared layers:
    a layer used in several places is replaced by one new layer everywhere.
    Graph nodes are shared by every model built on the same tensors (say
    `keras.Model(base.input, head(base.output))`): such models outside
    `root` are updated too, so they list the layers they now call.

    Args:
        root: the model (or layer) to rewrite.
        replace_fn: `fn(layer, key_path, name_path)` returning a new layer to
            put in place of `layer`, or None to keep it (and descend into it).
        stop: optional predicate; the walk does not descend into layers
            for which it is true (`replace_fn` still sees them).

    Returns:
        A dict mapping `id(old)` to the new layer, for every replacement.
    """
    # Every layer is chosen before anything changes, so that a failing
    # `replace_fn` leaves the model as it was.
    replaced = {}  # id(old) -> (old, new)
    visited = {id(root)}
    queue = [(root, (), ())]
    while queue:
        owner, key_path, name_path = queue.pop(0)
        for step, child in children(owner):
            if id(child) in visited:
                continue
            visited.add(id(child))
            child_key, child_names = key_path + (step,), name_path + (child.name,)
            new = replace_fn(child, child_key, child_names)
            if new is None or new is child:
                if stop is None or not stop(child):
                    queue.append((child, child_key, child_names))
                continue
            replaced[id(child)] = (child, new)
    if not replaced:
        return {}
    node_ids = set()
    for old, new in replaced.values():
        node_ids.update(id(node) for node in old._inbound_nodes)
        _rewire_graph_nodes(old, new)
    done = _replace_in_tree(root, replaced, stop)
    if node_ids:
        for model in _models_sharing_nodes(node_ids, done):
            done |= _replace_in_tree(model, replaced, stop)
    return {old_id: new for old_id, (_, new) in replaced.items()}


def _replace_in_tree(top, replaced, stop):
    """Replaces the layers in every slot of `top` and of the layers under it.

    Returns:
        The ids of the layers and models updated.
    """
    new_ids = {id(new) for _, new in replaced.values()}

    def left_alone(layer):
        # The new layers may hold the old ones (a wrapper its inner layer),
        # and stopped layers are not looked into.
        return (
            id(layer) in replaced
            or id(layer) in new_ids
            or (stop is not None and stop(layer))
        )

    owners = [top] + [
        node.layer for node in walk(top, stop=left_alone) if not left_alone(node.layer)
    ]
    # A Sequential runs an internal Functional over the same layers.
    owners += [
        owner._functional
        for owner in owners
        if isinstance(owner, keras.Sequential)
        and getattr(owner, "_functional", None) is not None
    ]
    for owner in owners:
        for step, child in list(children(owner)):
            if id(child) in replaced:
                _replace_slot(owner, step, child, replaced[id(child)][1])
        for old_id, (_, new) in replaced.items():
            _replace_in_tracker(owner, old_id, new)
        _replace_in_graph_operations(owner, replaced)
        _reset_compiled_functions(owner)
    return {id(owner) for owner in owners}


def _models_sharing_nodes(node_ids, known):
    """Graph models not in `known` whose graph holds any of these nodes.

    Keras keeps no link from a node to the models built on it, so the
    garbage collector's list of live objects is searched.
    """
    found = []
    for obj in gc.get_objects():
        # `type` only: `isinstance` would ask proxies for their `__class__`.
        if not issubclass(type(obj), _GRAPH_TYPES) or id(obj) in known:
            continue
        graph = obj
        if isinstance(obj, keras.Sequential):
            graph = getattr(obj, "_functional", None)
        nodes_by_depth = getattr(graph, "_nodes_by_depth", None) or {}
        nodes = (node for depth in nodes_by_depth.values() for node in depth)
        if any(id(node) in node_ids for node in nodes):
            found.append(obj)
    return found


def _assign(owner, name, value):
    """Sets an attribute of a layer as Keras would, without Keras's tracker.

    The tracker refuses new sublayers once a layer is built (`_layers` is
    updated separately). The backend's own hook still runs: on TensorFlow it
    replaces its record of the attribute (a checkpoint dependency).
    """
    with tracking.DotNotTrackScope():
        setattr(owner, name, value)


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
    _assign(new, "_inbound_nodes", list(old._inbound_nodes))
    _assign(new, "_outbound_nodes", list(old._outbound_nodes))
    _assign(old, "_inbound_nodes", [])
    _assign(old, "_outbound_nodes", [])


def _replace_in_graph_operations(owner, replaced):
    """Replaces layers in the operation lists of a Functional."""
    if _Functional is None or not isinstance(owner, _Functional):
        return
    swap = lambda ops: [replaced.get(id(op), (None, op))[1] for op in ops]
    _assign(owner, "_operations", swap(owner._operations))
    for depth, operations in owner._operations_by_depth.items():
        owner._operations_by_depth[depth] = swap(operations)
    if hasattr(owner, "_nnx_op_mapping"):  # Keras with Flax NNX.
        owner._setup_nnx_op_mapping()
    # Node keys are "<id(operation)>_ib-<index>" (keras.src.ops.function).
    renamed = {
        f"{old_id}_ib-": f"{id(new)}_ib-" for old_id, (_, new) in replaced.items()
    }
    for key in list(owner._nodes):
        prefix = key[: key.index("_ib-") + 4]
        if prefix in renamed:
            owner._nodes.discard(key)
            owner._nodes.add(renamed[prefix] + key[len(prefix):])


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
        _assign(owner, step[1], new)
    elif kind == "item":
        container = vars(owner)[step[1]]
        updated = _with_item(container, step[2:], new)
        if updated is not container:
            _assign(owner, step[1], updated)
    elif kind == "tracked":
        # Held where no key path reaches (a set, a dict with other keys):
        # replace it there by identity. `_layers` is updated separately.
        for name, value in _slot_attributes(owner):
            for keys, item in list(_contained_layers(value, every=True)):
                if item is old:
                    updated = _with_item(value, keys, new)
                    if updated is not value:
                        _assign(owner, name, updated)
                    value = updated
    # "layer" (graph) slots are replaced by rewiring the graph's nodes and
    # operation lists.


def _with_item(container, keys, new):
    """`container` with the entry at `keys` (one key per level) set to `new`.

    Lists, dicts and sets are changed in place and returned; a tuple is
    rebuilt (of the same type, namedtuples included) and the new tuple
    returned, for its own container to take.
    """
    key, rest = keys[0], keys[1:]
    current = key.element if isinstance(key, _Member) else container[key]
    item = _with_item(current, rest, new) if rest else new
    if item is current:
        return container
    if isinstance(container, tuple):
        # TensorFlow wraps tuple attributes in a proxy (`__wrapped__`).
        original = getattr(container, "__wrapped__", container)
        items = list(original)
        items[key] = item
        if hasattr(original, "_fields"):
            return type(original)._make(items)
        return type(original)(items)
    if isinstance(container, frozenset):
        return type(container)((container - {current}) | {item})
    if isinstance(container, set):
        # Builtin methods: a Keras TrackedSet would untrack the old layer.
        set.discard(container, current)
        set.add(container, item)
        return container
    with tracking.DotNotTrackScope():
        container[key] = item
    return container


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
