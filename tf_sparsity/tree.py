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
    if is_graph_model(owner):
        for child in owner.layers:
            if _is_layer(child):
                yield ("layer", child.name), child
        return
    seen = set()
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
    """Rewrites the layer tree, replacing layers chosen by `replace_fn`.

    Args:
        root: the model (or layer) to rewrite.
        replace_fn: `fn(layer, key_path, name_path)` returning a new layer to
            put in place of `layer`, or None to keep it (and descend into it).
        stop: optional predicate; layers for which it is true are kept as
            they are and not descended into.

    Returns:
        The rewritten root: `root` itself (changed in place) unless it is a
        graph model whose children changed, in which case a clone sharing all
        unchanged layers.
    """
    rewriter = _Rewriter(replace_fn, stop)
    result = rewriter.visit(root, (), ())
    if rewriter.changed:
        _reset_compiled_functions(result)
    return result


class _Rewriter:
    def __init__(self, replace_fn, stop):
        self.replace_fn = replace_fn
        self.stop = stop
        self.memo = {}
        self.changed = False

    def visit(self, layer, key_path, name_path):
        if id(layer) in self.memo:
            return self.memo[id(layer)]
        if key_path:
            if self.stop is not None and self.stop(layer):
                self.memo[id(layer)] = layer
                return layer
            replacement = self.replace_fn(layer, key_path, name_path)
            if replacement is not None:
                self.changed = True
                self.memo[id(layer)] = replacement
                return replacement
        self.memo[id(layer)] = layer  # Guards against cycles.
        new_children = {}
        for step, child in list(children(layer)):
            if id(child) not in new_children:
                new_children[id(child)] = self.visit(
                    child, key_path + (step,), name_path + (child.name,)
                )
            new = new_children[id(child)]
            if new is not child and not is_graph_model(layer):
                _replace_slot(layer, step, child, new)
        mapping = {
            key: new for key, new in new_children.items() if key != id(new)
        }
        if not mapping:
            return layer
        if is_graph_model(layer):
            result = keras.models.clone_model(
                layer, clone_function=lambda old: mapping.get(id(old), old)
            )
            self.memo[id(layer)] = result
            return result
        for old_id, new in mapping.items():
            _replace_in_tracker(layer, old_id, new)
        _reset_compiled_functions(layer)
        return layer


def _replace_in_tracker(owner, old_id, new):
    store = getattr(owner, "_layers", None)
    if store is None:
        return
    ids = [id(item) for item in store]
    if old_id not in ids:
        return
    tracker = getattr(owner, "_tracker", None)
    old = store[ids.index(old_id)]
    if tracker is not None and tracker.is_in_store("layers", old):
        tracker.replace_tracked_value("layers", old, new)
    else:  # pragma: no cover
        store[ids.index(old_id)] = new


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
    elif kind != "tracked":  # pragma: no cover
        raise ValueError(f"Cannot replace a layer in slot {step!r}.")


def _reset_compiled_functions(model):
    """Forgets traced train/test/predict functions after the graph changed."""
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            object.__setattr__(model, name, None)
