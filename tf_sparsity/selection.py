"""Choosing layers by name, path, regex or type: one place for `sparsify`'s
`layers=` and the distributions' `dense=`, `targets=` and per-layer values.

A selector matches a layer when it matches the layer itself or any block
that contains it (so `"transformer_layer_0"` selects every sparsifiable
layer inside that block). Strings are compared, then `re.fullmatch`ed,
against every slash-joined stretch of the layer's path that ends at the
layer or at one of its blocks: `"self_attention/query"` matches
`"gpt2_backbone_2/transformer_layer_0/self_attention/query"`, so selectors
need not spell auto-numbered names such as `gpt2_backbone_2`. A layer
object selects itself and every layer inside it (`layers=[backbone.
transformer_layers[0]]`).
"""

import dataclasses
import math
import re

import keras


@dataclasses.dataclass
class LayerInfo:
    """What selection and distributions know about one sparsifiable layer.

    Attributes:
        layer: the Keras layer.
        name_path: layer names from the model root down to this layer.
        shapes: the shapes of its sparsifiable kernels.
        ancestors: the layers containing it, outermost first.
        selected: whether the user asked for this layer to be sparsified.
    """

    layer: object
    name_path: tuple
    shapes: list
    ancestors: tuple = ()
    selected: bool = True

    @property
    def name(self):
        return self.layer.name

    @property
    def path(self):
        return "/".join(self.name_path)

    @property
    def size(self):
        return sum(math.prod(shape) for shape in self.shapes)

    def candidate_paths(self):
        """Every stretch of the path ending at this layer or a block of it."""
        names = self.name_path
        return [
            "/".join(names[start : end + 1])
            for end in range(len(names))
            for start in range(end + 1)
        ]


def check_selector(pattern, owner):
    if not isinstance(pattern, (str, type, keras.layers.Layer)):
        raise TypeError(
            f"{owner}: layer selectors are names, regexes, layer classes or "
            f"layer objects; got {pattern!r}."
        )


def matches(pattern, info):
    """True if `pattern` (a type, a name, a regex or a layer object)
    selects this layer."""
    check_selector(pattern, "Layer selection")
    if isinstance(pattern, keras.layers.Layer):
        return any(layer is pattern for layer in (*info.ancestors, info.layer))
    if isinstance(pattern, type):
        return any(isinstance(layer, pattern) for layer in (*info.ancestors, info.layer))
    candidates = info.candidate_paths()
    if pattern in candidates:
        return True
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"Invalid layer regex {pattern!r}: {error}") from None
    return any(regex.fullmatch(candidate) for candidate in candidates)


def match_all(patterns, infos, owner):
    """Layers matched by any pattern; a pattern matching nothing is an error."""
    matched = []
    for pattern in patterns:
        check_selector(pattern, owner)
        hits = [info for info in infos if matches(pattern, info)]
        if not hits:
            names = ", ".join(info.path for info in infos) or "(none)"
            raise ValueError(
                f"{owner}: {describe(pattern)} matches no sparsifiable layer. "
                f"Sparsifiable layers: {names}."
            )
        matched.extend(h for h in hits if not any(h is m for m in matched))
    return matched


def describe(pattern):
    if isinstance(pattern, keras.layers.Layer):
        return f"layer object '{pattern.name}' ({type(pattern).__name__})"
    if isinstance(pattern, type):
        return f"layer type {pattern.__name__}"
    return f"layer name or regex {pattern!r}"


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (str, type, keras.layers.Layer)):
        return [value]
    return list(value)
