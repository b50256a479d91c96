"""Dependency groups: the units of a model that are removed together.

Removing one output unit of a layer (a Dense neuron, a convolution filter)
removes a channel, and every weight that reads or carries that channel must
lose it too: the next layer's input rows, BatchNormalization's parameters of
that channel, a depthwise filter, and, through a residual `Add`, the same
channel of every other tensor added to it. Following Torch-Pruning's
DepGraph (Fang et al., CVPR 2023), `analyze` builds these groups once from
the Keras functional graph:

- every layer that makes new channels (Dense, the convolutions, an
  Embedding, an attention layer's output projection) opens a *space* of
  units;
- layers that act on each channel alone (activations, dropout, pooling,
  BatchNormalization, depthwise convolutions, `Flatten`) carry spaces
  through; `Add`-like merges join the spaces they add (one group, one
  choice of channels); `Concatenate` lays spaces side by side;
- a space that reaches a model output, a model input, or a layer that mixes
  channels in a way that cannot be cut (LayerNormalization normalizes over
  them, a `Reshape`, a softmax over channels, an unknown layer) is *pinned*:
  its units stay, and the layers that opened it are reported with the reason.

Layers with their own internal structure add groups of their own, found
wherever they are (also in subclassed models): the heads of every
`MultiHeadAttention` (keras-hub's attention layers subclass it) and the
feed-forward units of keras-hub's `TransformerEncoder`/`TransformerDecoder`.

A unit of a group can be removed exactly (`tfs.shrink`) when every weight
that reads it (its *consumer* couplings) is zero there: whatever the channel
carries is then multiplied by zero everywhere it goes.
"""

import dataclasses
import math

import keras
import numpy as np

from tf_sparsity import tree

KINDS = ("units", "heads")


@dataclasses.dataclass(frozen=True, eq=False)
class Coupling:
    """One axis of one weight tied to the units of a group.

    Attributes:
        layer: the plain layer owning the weight (never a wrapper).
        attribute: the attribute of `layer` holding the variable.
        axis: the weight axis along which the units lie.
        index: int array, one entry per position along `axis`: the group's
            unit at that position, or -1 where another group's units are
            (a `Concatenate`) .
        scored: whether the weights are removed with the unit and score it
            (kernels: masked while training); biases and normalization
            parameters are only sliced.
        consumer: whether the weight reads the unit's channel (its slice
            must be zero for the unit to be removed exactly).
    """

    layer: object
    attribute: str
    axis: int
    index: np.ndarray
    scored: bool = True
    consumer: bool = False

    @property
    def variable(self):
        return getattr(self.layer, self.attribute)

    def describe(self):
        return f"'{self.layer.name}'.{self.attribute.lstrip('_')}[axis {self.axis}]"


@dataclasses.dataclass(frozen=True)
class Resize:
    """A config field that holds a group's unit count in one layer.

    Attributes:
        layer: the layer whose config has the field.
        field: the config field (`units`, `filters`, `num_heads`,
            `intermediate_dim`, `output_shape`, `output_dim`).
        refusal: why the field cannot be changed (None when it can).
    """

    layer: object
    field: str
    refusal: str = None


@dataclasses.dataclass(eq=False)
class UnitGroup:
    """Units removed together.

    Attributes:
        kind: "units" (neurons, filters, channels) or "heads".
        size: the number of units.
        couplings: every weight axis that carries the units.
        resizes: the config fields that count them.
        producers: the layers whose units these are (the layers a user
            selects for pruning; a residual group has several).
    """

    kind: str
    size: int
    couplings: list
    resizes: list
    producers: list
    label: str = None

    @property
    def name(self):
        if self.label:
            return self.label
        names = [p.name for p in self.producers]
        shown = ", ".join(f"'{n}'" for n in names[:4])
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        return f"{self.kind} of {shown}{more}"


@dataclasses.dataclass
class Dependencies:
    """What `analyze` found.

    Attributes:
        groups: the `UnitGroup`s whose units can be removed.
        refused: `{layer path: reason}` for layers whose units cannot be
            removed (their space is pinned, or their connections unknown).
        reasons_by_layer: the same reasons by `id(layer)` (`reason_for`).
    """

    groups: list
    refused: dict
    reasons_by_layer: dict = dataclasses.field(default_factory=dict, repr=False)

    def reason_for(self, layer):
        """Why `layer`'s units cannot be removed, or None."""
        return self.reasons_by_layer.get(id(_plain(layer)))


def analyze(model, kind="units"):
    """The dependency groups of `model` (see the module docstring).

    The analysis is made once per model and kind and kept on the model:
    `sparsify`, the first mask update and `sparsity_summary` read the same
    groups. Wrapping layers (`sparsify`) does not change them; any other
    change to the layer tree (a layer replaced, added or removed, a graph
    rebuilt, a layer built or renamed) makes the next call analyze again.

    Args:
        model: a Keras model (sparse or not) or layer.
        kind: "units" (neurons, filters, FFN units) or "heads".

    Returns:
        A `Dependencies` (shared by the callers: read it, do not change it).
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
    cache = vars(model).get(_CACHE_ATTRIBUTE)
    signature = _Signature(model)
    if cache is None or cache.signature != signature:
        # An object, not a dict: the layer walk descends into containers
        # held in attributes and would find the cached layers there.
        cache = _Cache(signature)
        object.__setattr__(model, _CACHE_ATTRIBUTE, cache)
    if kind not in cache.found:
        cache.found[kind] = _analyze(model, kind)
    return cache.found[kind]


_CACHE_ATTRIBUTE = "_tf_sparsity_dependencies"


class _Signature:
    """What an analysis depends on: every plain layer under the model (by
    identity, wrappers seen through), its name, whether it is built, and
    the graph of each graph model (a `Sequential` rebuilds its graph when
    layers are added or removed). The layers are held, so their ids cannot
    be reused while the signature lives."""

    def __init__(self, model):
        layers = [node.layer for node in tree.walk(model) if not _is_wrapper(node.layer)]
        # The model itself by its state only (the signature is kept on it).
        self.root = (model.name, model.built, _graph_of(model))
        self.entries = sorted(
            ((id(layer), layer, layer.name, layer.built, _graph_of(layer)) for layer in layers),
            key=lambda entry: entry[0],
        )

    def __eq__(self, other):
        return (
            _same_graph(self.root, other.root)
            and len(self.entries) == len(other.entries)
            and all(
                a[0] == b[0] and a[2:4] == b[2:4] and _same_graph(a, b)
                for a, b in zip(self.entries, other.entries)
            )
        )


def _graph_of(layer):
    graph = _graph(layer)
    return "itself" if graph is layer else graph


def _same_graph(a, b):
    return a[-1] is b[-1] or a[-1] == "itself" == b[-1]


class _Cache:
    def __init__(self, signature):
        self.signature = signature
        self.found = {}


def _analyze(model, kind):
    if kind == "heads":
        return _head_groups(model)
    analysis = _GraphAnalysis()
    graph = _graph(model)
    if graph is not None:
        inputs = [
            analysis.pinned_channels(t, f"its channels come from an input of model '{graph.name}'")
            for t in graph.inputs
        ]
        outputs = analysis.walk(graph, inputs)
        for tensor, channels in zip(graph.outputs, outputs):
            analysis.pin(channels, f"its units reach an output of model '{model.name}'")
    groups, refused = analysis.groups()
    groups.extend(_feedforward_groups(model))
    producers = {id(p) for g in groups for p in g.producers}
    paths = {}
    for node in tree.walk(model, stop=_is_wrapper):
        layer = _plain(node.layer)
        paths.setdefault(id(layer), tree.path_string(node.name_path))
        if not _opens_units(layer) or id(layer) in refused or id(layer) in producers:
            continue
        owner = node.owner if node.owner is not None else model
        if owner is model and graph is None:
            reason = (
                f"it is inside '{model.name}' ({type(model).__name__}), a "
                "subclassed model whose connections between layers are not "
                "recorded; units can be removed only along a Functional or "
                "Sequential graph"
            )
        else:
            reason = (
                f"it is inside '{owner.name}' ({type(owner).__name__}), whose "
                "connections between its own layers are not known"
            )
        refused[id(layer)] = (layer, reason)
    return Dependencies(
        groups=groups,
        refused={paths.get(key, layer.name): reason for key, (layer, reason) in refused.items()},
        reasons_by_layer={key: reason for key, (_, reason) in refused.items()},
    )


def _is_wrapper(layer):
    # A `SparseWrapper`, recognized by its interface: its module depends on
    # the methods, whose mask updates depend on this module.
    return hasattr(layer, "kernels") and hasattr(layer, "method") and hasattr(layer, "layer")


def _plain(layer):
    return layer.layer if _is_wrapper(layer) else layer


def _graph(layer):
    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None)
    return layer if tree.is_graph_model(layer) else None


def _opens_units(layer):
    return isinstance(
        layer,
        (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding)
        + _CONVOLUTIONS
        + _SEPARABLE,
    )


# --- spaces of units and the channels of a tensor ---------------------------


class _Space:
    """A set of `size` units, joined with others by `Add`-like merges."""

    def __init__(self, size):
        self.size = int(size)
        self.parent = self
        self.couplings = []
        self.resizes = []
        self.producers = []
        self.pinned = None

    def root(self):
        space = self
        while space.parent is not space:
            space.parent = space.parent.parent
            space = space.parent
        return space


def _join(a, b):
    a, b = a.root(), b.root()
    if a is b:
        return
    b.parent = a
    a.couplings += b.couplings
    a.resizes += b.resizes
    a.producers += [p for p in b.producers if not any(p is q for q in a.producers)]
    a.pinned = a.pinned or b.pinned


@dataclasses.dataclass(frozen=True)
class _Channels:
    """The last axis of a tensor: `segments` of units, side by side
    (`Concatenate`), repeated `repeat` times with the channels fastest
    (`Flatten` of a feature map)."""

    segments: tuple  # of (_Space, size)
    repeat: int = 1

    @property
    def width(self):
        return sum(size for _, size in self.segments)

    def length(self):
        return self.width * self.repeat

    def indices(self):
        """`[(space, index array over the axis)]`, one per segment."""
        positions = np.arange(self.length()) % max(self.width, 1)
        result, offset = [], 0
        for space, size in self.segments:
            inside = (positions >= offset) & (positions < offset + size)
            result.append((space, np.where(inside, positions - offset, -1)))
            offset += size
        return result


_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
# Layers acting on each channel on its own, with no weights.
_CHANNELWISE = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
    keras.layers.Identity,
    keras.layers.ActivityRegularization,
)
_NORMALIZATIONS = tuple(
    getattr(keras.layers, name)
    for name in ("LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization")
    if hasattr(keras.layers, name)
)
_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


def _mixes_channels(layer):
    """Whether the layer's activation mixes channels (a softmax)."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") in _MIXING_ACTIVATIONS


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


class _GraphAnalysis:
    """Walks Functional graphs, following channels from layer to layer."""

    def __init__(self):
        self.spaces = []
        self.opened = {}  # id(layer) -> _Channels of its output units
        self.read = {}  # id(layer) -> _Channels its weights read
        self.refusals = {}  # id(space root at pin time) -> reason
        self.producer_layers = []

    # Spaces -----------------------------------------------------------------

    def new_space(self, size, producer=None):
        space = _Space(size)
        if producer is not None:
            space.producers.append(producer)
            self.producer_layers.append(producer)
        self.spaces.append(space)
        return space

    def pinned_channels(self, tensor, reason):
        channels = _Channels(((self.new_space(_width(tensor)), _width(tensor)),))
        self.pin(channels, reason)
        return channels

    def pin(self, channels, reason):
        if channels is None:
            return
        for space, _ in channels.segments:
            root = space.root()
            if root.pinned is None:
                root.pinned = reason

    def couple(self, channels, layer, attribute, axis, scored=True, consumer=True):
        """Ties `axis` of a weight to the units the tensor `channels` carries."""
        if getattr(layer, attribute, None) is None:
            return
        length = int(getattr(layer, attribute).shape[axis])
        if length != channels.length():
            self.pin(
                channels,
                f"its units flow into layer '{layer.name}', which reads "
                f"{channels.length()} channels with a weight axis of {length}",
            )
            return
        for space, index in channels.indices():
            space.root().couplings.append(
                Coupling(layer, attribute, axis % getattr(layer, attribute).ndim, index, scored, consumer)
            )

    def reads(self, layer, channels):
        """Records the channels a layer's weights read; a shared layer read
        from several tensors joins their spaces (its rows are removed once)."""
        previous = self.read.get(id(layer))
        if previous is None:
            self.read[id(layer)] = channels
            return True
        self.unify([previous, channels], layer)
        return False

    def unify(self, channel_list, layer):
        """Joins the channels of tensors a merge combines position by position."""
        first = channel_list[0]
        same = all(
            c.repeat == first.repeat and [s for _, s in c.segments] == [s for _, s in first.segments]
            for c in channel_list
        )
        if not same:
            for channels in channel_list:
                self.pin(
                    channels,
                    f"its units flow into layer '{layer.name}' "
                    f"({type(layer).__name__}), which combines tensors whose "
                    "channels are laid out differently",
                )
            return first
        for channels in channel_list[1:]:
            for (a, _), (b, _) in zip(first.segments, channels.segments):
                _join(a, b)
        return first

    def open(self, layer, size, couplings, field, refusal=None):
        """The output channels of a layer that makes `size` new units (one
        space per layer, shared by all its calls)."""
        if id(layer) in self.opened:
            return self.opened[id(layer)]
        space = self.new_space(size, producer=layer)
        for attribute, axis, scored in couplings:
            variable = getattr(layer, attribute, None)
            if variable is None:
                continue
            space.couplings.append(
                Coupling(
                    layer, attribute, axis % variable.ndim, np.arange(size), scored, False
                )
            )
        space.resizes.append(Resize(layer, field, refusal))
        channels = _Channels(((space, size),))
        self.opened[id(layer)] = channels
        return channels

    # The walk ---------------------------------------------------------------

    def walk(self, graph, input_channels):
        """Follows `graph` from its inputs' channels; returns its outputs'."""
        known = {id(t): c for t, c in zip(graph.inputs, input_channels)}
        nodes = tree.graph_nodes(graph)
        for node in nodes:
            layer = node.operation
            inputs = [known.get(id(t)) for t in node.input_tensors]
            inputs = [
                c if c is not None else self.pinned_channels(t, "its channels come from outside the graph")
                for c, t in zip(inputs, node.input_tensors)
            ]
            outputs = self.apply(_plain(layer), node, inputs)
            for tensor, channels in zip(node.outputs, outputs):
                known[id(tensor)] = channels
        return [known.get(id(t)) or self.pinned_channels(t, "its channels are unknown") for t in graph.outputs]

    def apply(self, layer, node, inputs):
        """The output channels of one call of `layer`."""
        nested = _graph(layer)
        if nested is not None:
            return self.walk(nested, inputs)
        rule = self.rule(layer)
        if rule is None:
            reason = (
                f"layer '{layer.name}' ({type(layer).__name__}), which is not known "
                "to keep channels apart"
            )
            return self.opaque(inputs, node, reason)
        return rule(layer, node, inputs)

    def opaque(self, inputs, node, reason):
        """Pins what flows into a layer that mixes channels (`reason` says
        how); its outputs are pinned too."""
        for channels in inputs:
            self.pin(channels, f"its units flow into {reason}")
        return [self.pinned_channels(t, f"its channels come out of {reason}") for t in node.outputs]

    def rule(self, layer):
        if isinstance(layer, keras.layers.InputLayer):
            return lambda layer, node, inputs: inputs
        if _is_hub_block(layer):
            return self.hub_block
        if isinstance(layer, keras.layers.MultiHeadAttention):
            return self.attention
        if isinstance(layer, _TRANSPOSED):
            return None
        if isinstance(layer, _SEPARABLE):
            return self.separable
        if isinstance(layer, _DEPTHWISE):
            return self.depthwise
        if isinstance(layer, _CONVOLUTIONS):
            return self.convolution
        if isinstance(layer, keras.layers.EinsumDense):
            return self.einsum_dense
        if isinstance(layer, keras.layers.Dense):
            return self.dense
        if isinstance(layer, keras.layers.Embedding):
            return self.embedding
        if isinstance(layer, keras.layers.BatchNormalization):
            return self.batch_normalization
        if isinstance(layer, _NORMALIZATIONS):
            return self.normalization
        if isinstance(layer, _MERGES):
            return self.merge
        if isinstance(layer, keras.layers.Concatenate):
            return self.concatenate
        if isinstance(layer, keras.layers.Flatten):
            return self.flatten
        if isinstance(layer, keras.layers.Activation):
            return None if _mixes_channels(layer) else self.channelwise
        if isinstance(layer, _CHANNELWISE):
            return self.channelwise
        return None

    def channelwise(self, layer, node, inputs):
        if not _channels_last(layer) or len(inputs) != 1:
            return self.opaque(inputs, node, f"layer '{layer.name}', which is not channels-last")
        return inputs[:1]

    def dense(self, layer, node, inputs):
        return self.linear(layer, node, inputs, 0, -1, "units")

    def convolution(self, layer, node, inputs):
        if getattr(layer, "groups", 1) != 1 or not _channels_last(layer):
            return self.opaque(
                inputs,
                node,
                f"convolution '{layer.name}', which is grouped or channels-first",
            )
        return self.linear(layer, node, inputs, -2, -1, "filters")

    def linear(self, layer, node, inputs, input_axis, output_axis, field, refusal=None):
        (channels,) = inputs
        if self.reads(layer, channels):
            self.couple(channels, layer, "_kernel", input_axis)
        out = self.open(
            layer,
            int(layer._kernel.shape[output_axis]),
            [("_kernel", output_axis, True), ("bias", 0, False)],
            field,
            refusal,
        )
        if _mixes_channels(layer):
            self.pin(out, f"layer '{layer.name}' applies a softmax over its units")
        return [out]

    def einsum_dense(self, layer, node, inputs):
        # Only the Dense-like form: the input's last axis contracted with the
        # kernel's first, the kernel's last axis the output's last.
        inputs_spec, output_spec = layer.equation.replace(" ", "").split("->")
        source, kernel = inputs_spec.split(",")
        dense_like = (
            len(kernel) == 2
            and source[-1] == kernel[0]
            and kernel[0] not in output_spec
            and output_spec[-1] == kernel[1]
            and source[:-1] == output_spec[:-1]
            and layer.bias_axes in (None, kernel[1])
        )
        if not dense_like:
            return self.opaque(
                inputs,
                node,
                f"EinsumDense '{layer.name}' ({layer.equation}), which is not a "
                "plain projection of the last axis",
            )
        return self.linear(layer, node, inputs, 0, -1, "output_shape")

    def embedding(self, layer, node, inputs):
        out = self.open(layer, layer.output_dim, [("_embeddings", 1, True)], "output_dim")
        return [out]

    def separable(self, layer, node, inputs):
        if layer.depth_multiplier != 1 or not _channels_last(layer):
            return self.opaque(
                inputs,
                node,
                f"separable convolution '{layer.name}', which has a depth "
                "multiplier or is channels-first",
            )
        (channels,) = inputs
        if self.reads(layer, channels):
            self.couple(channels, layer, "depthwise_kernel", -2, consumer=False)
            self.couple(channels, layer, "pointwise_kernel", -2)
        out = self.open(
            layer,
            layer.filters,
            [("pointwise_kernel", -1, True), ("bias", 0, False)],
            "filters",
        )
        return [out]

    def depthwise(self, layer, node, inputs):
        if layer.depth_multiplier != 1 or not _channels_last(layer):
            return self.opaque(
                inputs,
                node,
                f"depthwise convolution '{layer.name}', which has a depth "
                "multiplier or is channels-first",
            )
        (channels,) = inputs
        if self.reads(layer, channels):
            self.couple(channels, layer, "kernel", -2, consumer=False)
            self.couple(channels, layer, "bias", 0, scored=False, consumer=False)
        return [channels]

    def batch_normalization(self, layer, node, inputs):
        (channels,) = inputs
        rank = len(node.input_tensors[0].shape)
        if layer.axis not in (-1, rank - 1) and list(getattr(layer, "axis", [])) != [rank - 1]:
            return self.opaque(inputs, node, f"'{layer.name}', which normalizes another axis")
        if self.reads(layer, channels):
            for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
                self.couple(channels, layer, attribute, 0, scored=False, consumer=False)
        return [channels]

    def normalization(self, layer, node, inputs):
        reason = (
            f"layer '{layer.name}' ({type(layer).__name__}), which normalizes over "
            "the channels (removing one changes the statistics of the others)"
        )
        return self.opaque(inputs, node, reason)

    def merge(self, layer, node, inputs):
        return [self.unify(inputs, layer)]

    def concatenate(self, layer, node, inputs):
        rank = len(node.outputs[0].shape)
        if layer.axis in (-1, rank - 1):
            if any(c.repeat != 1 for c in inputs):
                return self.opaque(inputs, node, f"'{layer.name}', which joins flattened maps")
            segments = tuple(s for c in inputs for s in c.segments)
            return [_Channels(segments)]
        return [self.unify(inputs, layer)]

    def flatten(self, layer, node, inputs):
        (channels,) = inputs
        shape = node.input_tensors[0].shape
        if not _channels_last(layer) or any(d is None for d in shape[1:-1]):
            return self.opaque(inputs, node, f"'{layer.name}', which flattens an unknown shape")
        return [_Channels(channels.segments, channels.repeat * math.prod(shape[1:-1]))]

    def attention(self, layer, node, inputs):
        query, value, key = _attention_inputs(node, inputs)
        for channels, sublayer in (
            (query, layer._query_dense),
            (key, layer._key_dense),
            (value, layer._value_dense),
        ):
            sublayer = _plain(sublayer)
            if channels is not None and self.reads(sublayer, channels):
                self.couple(channels, sublayer, "_kernel", 0)
        output = _plain(layer._output_dense)
        out = self.open(
            output,
            int(output._kernel.shape[-1]),
            [("_kernel", -1, True), ("bias", 0, False)],
            "output_shape",
        )
        # The count lives in the attention layer's config.
        space = out.segments[0][0]
        space.resizes[-1] = Resize(layer, "output_shape")
        if len(node.outputs) > 1:
            return [out] + [
                self.pinned_channels(t, "they are attention scores") for t in node.outputs[1:]
            ]
        return [out]

    def hub_block(self, layer, node, inputs):
        reason = (
            f"layer '{layer.name}' ({type(layer).__name__}), which normalizes its "
            "residual stream with LayerNormalization"
        )
        return self.opaque(inputs, node, reason)

    # Results ----------------------------------------------------------------

    def groups(self):
        groups, refused, seen = [], {}, set()
        for space in self.spaces:
            root = space.root()
            if id(root) in seen:
                continue
            seen.add(id(root))
            if not root.producers:
                continue
            if root.pinned is not None:
                for producer in root.producers:
                    refused.setdefault(id(producer), (producer, root.pinned))
                continue
            groups.append(
                UnitGroup(
                    kind="units",
                    size=root.size,
                    couplings=list(root.couplings),
                    resizes=list(root.resizes),
                    producers=list(root.producers),
                )
            )
        return groups, refused


def _width(tensor):
    shape = tensor.shape
    return int(shape[-1]) if len(shape) and shape[-1] is not None else 0


def _attention_inputs(node, inputs):
    """(query, value, key) channels of a MultiHeadAttention call."""
    by_id = {id(t): c for t, c in zip(node.input_tensors, inputs)}
    args, kwargs = node.arguments.args, node.arguments.kwargs

    def find(position, name):
        if name in kwargs:
            value = kwargs[name]
        elif len(args) > position:
            value = args[position]
        else:
            return None
        return by_id.get(id(value))

    query, value = find(0, "query"), find(1, "value")
    key = find(2, "key")
    return query, value, value if key is None else key


def _hub_types(*names):
    try:
        import keras_hub
    except ImportError:
        return ()
    return tuple(getattr(keras_hub.layers, n) for n in names if hasattr(keras_hub.layers, n))


def _is_hub_block(layer):
    return isinstance(layer, _hub_types("TransformerEncoder", "TransformerDecoder"))


def _owners(model):
    """`{id(layer): owner}` for every layer in `model`."""
    return {id(node.layer): node.owner for node in tree.walk(model, stop=_is_wrapper)}


def _feedforward_groups(model):
    """The intermediate units of keras-hub Transformer blocks' feed-forward
    networks: Dense -> activation -> dropout -> Dense, inside the block."""
    groups = []
    for node in tree.walk(model, stop=_is_wrapper):
        block = node.layer
        if not _is_hub_block(block):
            continue
        intermediate = _plain(block._feedforward_intermediate_dense)
        output = _plain(block._feedforward_output_dense)
        size = int(intermediate._kernel.shape[-1])
        couplings = [
            Coupling(intermediate, "_kernel", 1, np.arange(size), True, False),
            Coupling(output, "_kernel", 0, np.arange(size), True, True),
        ]
        if intermediate.bias is not None:
            couplings.append(Coupling(intermediate, "bias", 0, np.arange(size), False, False))
        groups.append(
            UnitGroup(
                kind="units",
                size=size,
                couplings=couplings,
                resizes=[Resize(block, "intermediate_dim")],
                producers=[intermediate],
                label=f"feed-forward units of '{block.name}'",
            )
        )
    return groups


def _head_groups(model):
    owners = _owners(model)
    groups, refused = [], {}
    for node in tree.walk(model, stop=_is_wrapper):
        layer = node.layer
        if not isinstance(layer, keras.layers.MultiHeadAttention) or not layer.built:
            continue
        heads = int(layer.num_heads)
        index = np.arange(heads)
        couplings = []
        projections = [_plain(getattr(layer, a)) for a in ("_query_dense", "_key_dense", "_value_dense")]
        for projection in projections:
            couplings.append(Coupling(projection, "_kernel", 1, index, True, False))
            if projection.bias is not None:
                couplings.append(Coupling(projection, "bias", 0, index, False, False))
        output = _plain(layer._output_dense)
        couplings.append(Coupling(output, "_kernel", 0, index, True, True))
        owner = owners.get(id(layer))
        if _is_hub_block(owner):
            resize = Resize(
                owner,
                "num_heads",
                f"{type(owner).__name__} '{owner.name}' derives each head's size "
                "from its config (key_dim = hidden size // num_heads), so fewer "
                "heads would change the size of every head",
            )
        else:
            resize = Resize(layer, "num_heads")
        groups.append(
            UnitGroup(
                kind="heads",
                size=heads,
                couplings=couplings,
                resizes=[resize],
                producers=projections,
                label=f"heads of '{layer.name}'"
                + (f" in '{owner.name}'" if owner is not None and owner is not model else ""),
            )
        )
    return Dependencies(groups=groups, refused=refused)


def live_units(group, value_of=None):
    """Bool array over the group's units: those some reader still uses
    (a unit whose every reader is zero there can be removed exactly).

    Args:
        group: a `UnitGroup`.
        value_of: `fn(coupling) -> array`, the weight a reader computes
            with (for a sparse model, its inference kernel); by default the
            variable itself.

    Returns:
        The array, or None when nothing reads the group.
    """
    readers = [c for c in group.couplings if c.consumer]
    if not readers:
        return None
    used = np.zeros(group.size, bool)
    for coupling in readers:
        value = coupling.variable if value_of is None else value_of(coupling)
        value = np.asarray(keras.ops.convert_to_numpy(value))
        other = tuple(a for a in range(value.ndim) if a != coupling.axis)
        nonzero = np.any(value != 0, axis=other) if other else value != 0
        inside = coupling.index >= 0
        used[coupling.index[inside]] |= nonzero[inside]
    return used

