"""`sparsify()`: wrap the chosen layers of any Keras model with a method."""

import keras

from tf_sparsity import distributions as distributions_lib
from tf_sparsity import methods as methods_lib
from tf_sparsity import tree
from tf_sparsity.layers import kernels as kernels_lib
from tf_sparsity.layers.sparse_wrapper import SparseWrapper


def is_sparse(layer):
    return isinstance(layer, SparseWrapper)


def sparse_layers(model):
    """All `SparseWrapper`s in `model`, with their slash-joined paths.

    Returns:
        List of `(path, wrapper)` in a deterministic order.
    """
    if is_sparse(model):
        return [(model.name, model)]
    return [
        (tree.path_string(node.name_path), node.layer)
        for node in tree.walk(model, stop=is_sparse)
        if is_sparse(node.layer)
    ]


def layer_infos(model):
    """`LayerInfo` for every supported layer (wrapped or not) in `model`."""
    infos = []
    for node in tree.walk(model, stop=is_sparse):
        layer = node.layer.layer if is_sparse(node.layer) else node.layer
        attributes = kernels_lib.kernel_attributes(layer)
        if attributes is None or not layer.built:
            continue
        shapes = [tuple(getattr(layer, a).shape) for a in attributes]
        infos.append(
            distributions_lib.LayerInfo(
                layer=node.layer, path=tree.path_string(node.name_path), shapes=shapes
            )
        )
    return infos


def sparsify(model, method, distribution=None, layers=None):
    """Returns `model` with the chosen layers' kernels made sparse.

    Layers are reached wherever they are: in Sequential and functional models
    (nested ones too), in subclassed models and inside custom layers (such as
    the EinsumDense projections of `MultiHeadAttention`). Trained weights are
    kept; the result shares its layers with `model`. Functional and
    Sequential graphs are cloned; other layers are rewired in place, so a
    subclassed model is changed and returned as is. Compile the result
    before training.

    Args:
        model: a built Keras model (or layer).
        method: a sparsity method, e.g. `tfs.MagnitudePruning(schedule)`.
        distribution: how the target is spread over layers: `tfs.Uniform()`
            (default), `tfs.ERK()` or `tfs.PerLayer({...})`.
        layers: which layers to consider: names, regexes (matched against a
            layer's name or its slash-joined path) or layer types. None
            selects every supported layer.

    Returns:
        The sparse model.

    Raises:
        ValueError: the model is unbuilt or already sparse, a selector
            matches nothing or names an unsupported layer, or the
            distribution cannot reach the target.
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"sparsify expects a Keras model or layer, got {model!r}.")
    method = methods_lib.get(method)
    distribution = distributions_lib.get(distribution)
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its layers' shapes are "
            "unknown. Build it first: `model.build(input_shape)` or call it "
            "on a batch of data."
        )
    already = sparse_layers(model)
    if already:
        raise ValueError(
            f"Model '{model.name}' is already sparse (layer '{already[0][0]}' "
            "is a SparseWrapper). Call `tfs.strip(model)` first to sparsify "
            "it again with another method."
        )
    infos = layer_infos(model)
    _check_unbuilt(model)
    if layers is not None:
        _select(model, infos, layers)
    if not any(info.selected for info in infos):
        raise ValueError(f"Model '{model.name}' has no layer that can be made sparse.")
    sparsities = distribution.layer_sparsities(infos, method.final_sparsity)
    targets = {
        id(info.layer): target
        for info, target in zip(infos, sparsities)
        if info.selected and (target is None or target > 0.0)
    }
    if isinstance(method, methods_lib.RegularizedMethod):
        _check_training_reaches(model, targets, method)

    def wrap(layer, key_path, name_path):
        if id(layer) not in targets:
            return None
        return SparseWrapper(layer, method, target_sparsity=targets[id(layer)])

    return tree.transform(model, wrap, stop=is_sparse)


def _check_training_reaches(model, targets, method):
    """Noise-based methods need `training=True` to reach each wrapped layer.

    Keras passes `training` only into layers whose `call` accepts it, and
    only from there to their sublayers (Dropout has the same need).
    """
    parents = {}
    for node in tree.walk(model):
        parents.setdefault(id(node.layer), (node.owner, node.name_path))
    for node in tree.walk(model):
        if id(node.layer) not in targets:
            continue
        owner = node.owner
        while owner is not None:
            if not getattr(owner, "_call_has_training_arg", True):
                raise ValueError(
                    f"{type(method).__name__} needs `training=True` to reach "
                    f"layer '{tree.path_string(node.name_path)}', but "
                    f"'{owner.name}' ({type(owner).__name__}).call does not "
                    "accept a `training` argument, so Keras never passes it "
                    "on. Add `training=None` to that call signature and pass "
                    "it to the sublayers."
                )
            owner = parents.get(id(owner), (None, None))[0]


def _check_unbuilt(model):
    for node in tree.walk(model):
        if kernels_lib.is_supported(node.layer) and not node.layer.built:
            raise ValueError(
                f"Cannot sparsify model '{model.name}': "
                f"{kernels_lib.unsupported_reason(node.layer)}."
            )


def _select(model, infos, selectors):
    selectors = [selectors] if isinstance(selectors, (str, type)) else list(selectors)
    every = [node for node in tree.walk(model)]
    chosen = set()
    for selector in selectors:
        hits = [info for info in infos if distributions_lib.matches(selector, info)]
        for node in every:
            layer = node.layer
            if kernels_lib.is_supported(layer):
                continue
            path = tree.path_string(node.name_path)
            exact = isinstance(selector, str) and selector in (layer.name, path)
            by_type = isinstance(selector, type) and isinstance(layer, selector)
            if exact or (by_type and not hits):
                raise ValueError(
                    f"Cannot sparsify layer '{path}': "
                    f"{kernels_lib.unsupported_reason(layer)}."
                )
        if not hits:
            raise ValueError(
                f"Selector {selector!r} in `layers=` matches no layer of model "
                f"'{model.name}'. Sparsifiable layers: "
                f"{', '.join(info.path for info in infos)}."
            )
        chosen.update(id(info) for info in hits)
    for info in infos:
        info.selected = id(info) in chosen
