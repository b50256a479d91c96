"""`sparsify()`: wrap the chosen layers of any Keras model with a method."""

import warnings

import keras

from tf_sparsity import dependency
from tf_sparsity import distributions as distributions_lib
from tf_sparsity import methods as methods_lib
from tf_sparsity import selection
from tf_sparsity import tree
from tf_sparsity.masks import num_to_prune
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


def sparse_kernels(model):
    """Every `SparseKernel` of `model`, in a deterministic order, each with
    its `layer_path` set to its wrapper's path in the model.

    Returns:
        A list of `SparseKernel`s (a wrapper used in several places counts
        once).
    """
    kernels = []
    for path, wrapper in sparse_layers(model):
        for kernel in wrapper.kernels:
            kernel.layer_path = path
            kernels.append(kernel)
    return kernels


def layer_infos(model):
    """`LayerInfo` for every supported layer (wrapped or not) in `model`."""
    infos = []
    owners = {}
    for node in tree.walk(model, stop=is_sparse):
        owners[id(node.layer)] = node.owner
        layer = node.layer.layer if is_sparse(node.layer) else node.layer
        if not kernels_lib.is_supported(layer) or not layer.built:
            continue
        ancestors = []
        owner = node.owner
        while owner is not None and owner is not model:
            ancestors.insert(0, owner)
            owner = owners.get(id(owner))
        infos.append(_layer_info(node.layer, node.name_path, ancestors))
    return infos


def _layer_info(layer, name_path, ancestors=()):
    inner = layer.layer if is_sparse(layer) else layer
    problem = kernels_lib.kernel_attribute_problem(inner)
    if problem is not None:
        raise ValueError(f"Cannot sparsify: {problem}.")
    return selection.LayerInfo(
        layer=layer,
        name_path=tuple(name_path),
        shapes=[
            tuple(getattr(inner, spec.attribute).shape)
            for spec in kernels_lib.kernel_specs(inner)
        ],
        ancestors=tuple(ancestors),
    )


def sparsify(model, method, distribution=None, layers=None):
    """Makes the chosen layers of `model` sparse, in place, and returns it.

    Layers are reached wherever they are: in Sequential and functional models
    (nested ones too), in subclassed models and inside custom layers (such as
    the EinsumDense projections of `MultiHeadAttention`). Each chosen layer
    is replaced by a `SparseWrapper` around it in every place that holds it
    (graph nodes, attributes, lists), so the model keeps its class and
    methods (a keras-hub `GPT2CausalLM` still generates), a shared layer stays
    shared, and trained weights are kept. The model passed in *is* the sparse
    model afterwards; to keep a dense copy, clone it first. Compile it
    (again) before training.

    Args:
        model: a built Keras model, or a single supported layer (returned
            wrapped).
        method: a sparsity method, e.g. `tfs.MagnitudePruning(schedule)`.
        distribution: how the target is spread over layers: `tfs.Uniform()`
            (default), `tfs.ERK()` or `tfs.PerLayer({...})`.
        layers: which layers to consider: names, regexes (matched against a
            layer's name or its slash-joined path, or those of a block that
            contains it), layer types or layer objects (a block selects the
            layers inside it). None selects every supported layer.

    Returns:
        The sparse model (`model` itself, or the wrapper of a single layer).

    Raises:
        ValueError: the model is unbuilt or already sparse, a selector
            matches nothing or names an unsupported layer, or the
            distribution cannot reach the target or keeps every layer dense.
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
    if kernels_lib.is_supported(model):
        return _sparsify_single_layer(model, method, distribution, layers)
    infos = layer_infos(model)
    _check_unbuilt(model)
    if layers is not None:
        _select(model, infos, layers)
    if not any(info.selected for info in infos):
        raise ValueError(
            f"Model '{model.name}' has no layer that can be made sparse; "
            f"supported types: {kernels_lib.supported_type_names()}."
        )
    targets = _targets(model, infos, method, distribution)
    kind = getattr(getattr(method, "structure", None), "coupled_kind", None)
    if kind is not None:
        targets = _unit_targets(model, infos, targets, method, kind, layers is not None)
    if isinstance(method, methods_lib.RegularizedMethod):
        _check_training_reaches(model, targets, method)

    def wrap(layer, key_path, name_path):
        if id(layer) not in targets:
            return None
        return SparseWrapper(layer, method, target_sparsity=targets[id(layer)])

    tree.transform(model, wrap, stop=is_sparse)
    return model


def _targets(model, infos, method, distribution):
    """`{id(layer): final sparsity}` of the layers to wrap."""
    sparsities = distribution.layer_sparsities(infos, method.final_sparsity)
    targets = {
        id(info.layer): target
        for info, target in zip(infos, sparsities)
        if info.selected and (target is None or target > 0.0)
    }
    if not targets and method.final_sparsity == 0.0:
        raise ValueError(
            f"{type(method).__name__}'s target sparsity is 0.0, so no layer "
            f"of model '{model.name}' would become sparse. Give the schedule "
            "a final sparsity above 0."
        )
    if not targets:
        raise ValueError(
            f"{distribution!r} keeps every selected layer of model "
            f"'{model.name}' dense, so nothing would become sparse. Leave at "
            "least one layer out of `dense=`."
        )
    return targets


def _unit_targets(model, infos, targets, method, kind, explicit):
    """`{id(layer): target}` for structures that remove whole units
    (`tfs.Units`, `tfs.Heads`): every layer of a dependency group with a
    selected producer is wrapped, producers at the group's target, the
    layers that only read its units at 0 (their masks lose the rows of the
    removed units). Selected layers whose units cannot be removed stay dense
    and are named in a warning with the reason; when none can, the error
    names them."""
    structure = method.structure
    found = dependency.analyze(model, kind)
    names = {id(info.layer): info.path for info in infos}
    refused = [
        (info, found.reason_for(info.layer))
        for info in infos
        if info.selected and found.reason_for(info.layer) is not None
    ]
    chosen = {}
    for group in found.groups:
        selected = [targets[id(p)] for p in group.producers if id(p) in targets]
        selected = [method.final_sparsity if t is None else t for t in selected]
        if not selected:
            continue
        target = min(selected)
        refusals = [r for r in group.resizes if r.refusal]
        if refusals:
            raise ValueError(
                f"Cannot prune the {group.name} with {structure!r}: "
                f"{refusals[0].refusal}, and `tfs.shrink` could not build the "
                f"smaller model (config field `{refusals[0].field}`). Leave these "
                "layers out of `sparsify(..., layers=...)`."
            )
        pruned = num_to_prune(target, group.size)
        if group.size < 2 or pruned >= group.size:
            raise ValueError(
                f"Cannot prune the {group.name} with {structure!r}: the group has "
                f"{group.size} {structure.unit_name}(s) and target sparsity "
                f"{target:g} would prune {pruned}; lower the target or leave "
                "these layers out of `sparsify(..., layers=...)`."
            )
        for coupling in group.couplings:
            if coupling.scored:
                key = id(coupling.layer)
                producer = any(coupling.layer is p for p in group.producers)
                chosen[key] = max(chosen.get(key, 0.0), target if producer else 0.0)
    if not chosen:
        reasons = "; ".join(f"'{info.path}': {reason}" for info, reason in refused[:5])
        raise ValueError(
            f"No {structure.unit_name} of model '{model.name}' can be removed "
            f"with {structure!r}" + (f": {reasons}." if reasons else ".")
        )
    if not explicit:
        # A model's last layer always keeps its units: only worth a word
        # when it was chosen by name.
        refused = [(info, reason) for info, reason in refused if "reach an output" not in reason]
    if refused:
        warnings.warn(
            f"{structure!r} keeps these layers' {structure.unit_name}s (they stay "
            "dense): "
            + "; ".join(f"'{info.path}': {reason}" for info, reason in refused),
            stacklevel=3,
        )
    unknown = [key for key in chosen if key not in names]
    if unknown:
        raise ValueError(
            f"{structure!r}: a layer coupled to the pruned units of model "
            f"'{model.name}' cannot be wrapped (it is not reachable as a layer "
            "of the model)."
        )
    return chosen


def _sparsify_single_layer(layer, method, distribution, layers):
    if layers is not None:
        raise ValueError(
            f"`layers=` selects layers inside a model; '{layer.name}' is a "
            "single layer. Pass it without `layers=`."
        )
    infos = [_layer_info(layer, (layer.name,))]
    targets = _targets(layer, infos, method, distribution)
    return SparseWrapper(layer, method, target_sparsity=targets[id(layer)])


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
    if isinstance(selectors, (str, type, keras.layers.Layer)):
        selectors = [selectors]
    elif not isinstance(selectors, (list, tuple, set)):
        raise TypeError(
            "`layers=` takes a name, regex, layer class or layer object, or a list of them; "
            f"got {selectors!r}."
        )
    selectors = list(selectors)
    if not selectors:
        raise ValueError(
            "`layers=[]` selects no layer. Pass None (the default) to select "
            "every supported layer, or name the layers to make sparse."
        )
    chosen = set()
    for selector in selectors:
        selection.check_selector(selector, "sparsify(layers=...)")
        hits = [info for info in infos if selection.matches(selector, info)]
        if not hits:
            _raise_unmatched(model, infos, selector)
        chosen.update(id(info) for info in hits)
    for info in infos:
        info.selected = id(info) in chosen


def _raise_unmatched(model, infos, selector):
    """The error for a selector that reaches no supported layer."""
    for node in tree.walk(model):
        named = isinstance(selector, str) and selector in (
            node.layer.name,
            tree.path_string(node.name_path),
        )
        typed = isinstance(selector, type) and isinstance(node.layer, selector)
        if named or typed:
            raise ValueError(
                f"Cannot sparsify layer '{tree.path_string(node.name_path)}': "
                f"{kernels_lib.unsupported_reason(node.layer)}, and it "
                "contains no layer that can be."
            )
    raise ValueError(
        f"Selector {selector!r} in `layers=` matches no layer of model "
        f"'{model.name}'. Sparsifiable layers: "
        f"{', '.join(info.path for info in infos)}."
    )
