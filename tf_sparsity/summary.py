"""`sparsity_summary()`: how sparse a model is, layer by layer."""

import dataclasses

import numpy as np
from keras import ops

from tf_sparsity import dependency
from tf_sparsity.sparsify import is_sparse
from tf_sparsity import tree
from tf_sparsity.layers import kernels as kernels_lib


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """One kernel's row in a `SparsityReport`.

    Attributes:
        path: slash-joined layer names from the model root.
        layer_type: class name of the (wrapped) layer.
        kernel: which kernel ("kernel", "depthwise_kernel", ...).
        shape: the kernel's shape.
        size: number of weights.
        nonzero: weights that inference uses (non-zero).
        target: the layer's final target sparsity (None when not wrapped,
            or when its method has no schedule).
        wrapped: whether the layer is sparsified.
        supported: False for weights of a layer type tf_sparsity cannot
            make sparse (they count as dense in the global sparsity; see
            `tfs.register_sparsifiable`).
    """

    path: str
    layer_type: str
    kernel: str
    shape: tuple
    size: int
    nonzero: int
    target: object = None
    wrapped: bool = False
    supported: bool = True

    @property
    def sparsity(self):
        return 1.0 - self.nonzero / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class UnitGroupSparsity:
    """One dependency group's row in a `SparsityReport` of a model pruned
    by whole units (`tfs.Units`, `tfs.Heads`).

    Attributes:
        name: the group ("units of 'dense_1'", "heads of 'attention'").
        size: its units.
        live: units still read by some layer (what `tfs.shrink` keeps).
    """

    name: str
    size: int
    live: int


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-kernel sparsity of a model and its global sparsity.

    Global sparsity is the fraction of zeros over the kernels of every
    supported layer (layers kept dense count with all their weights) and the
    matrices (rank >= 2 weights) of layers that cannot be made sparse, such
    as keras-hub's `PositionEmbedding`, which count as dense.
    """

    layers: tuple
    unit_groups: tuple = ()
    kept_whole: tuple = ()  # (layer name, why its units cannot be removed)

    @property
    def size(self):
        return sum(row.size for row in self.layers)

    @property
    def nonzero(self):
        return sum(row.nonzero for row in self.layers)

    @property
    def global_sparsity(self):
        return 1.0 - self.nonzero / self.size if self.size else 0.0

    def as_dict(self):
        """JSON-friendly form: global sparsity and one dict per row."""
        return {
            "global_sparsity": self.global_sparsity,
            "size": self.size,
            "nonzero": self.nonzero,
            "layers": [
                {
                    "path": row.path,
                    "layer_type": row.layer_type,
                    "kernel": row.kernel,
                    "shape": list(row.shape),
                    "size": row.size,
                    "nonzero": row.nonzero,
                    "sparsity": row.sparsity,
                    "target": row.target,
                    "wrapped": row.wrapped,
                    "supported": row.supported,
                }
                for row in self.layers
            ],
        }

    def table(self):
        header = ("layer", "type", "kernel", "shape", "params", "nonzero", "sparsity", "target")
        rows = [
            (
                row.path,
                row.layer_type,
                row.kernel,
                "x".join(str(d) for d in row.shape),
                f"{row.size:,}",
                f"{row.nonzero:,}",
                f"{row.sparsity:.2%}",
                _target_text(row),
            )
            for row in self.layers
        ]
        rows.append(
            ("global", "", "", "", f"{self.size:,}", f"{self.nonzero:,}",
             f"{self.global_sparsity:.2%}", "")
        )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        rule = "-" * len(line(header))
        text = "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])
        if self.unit_groups:
            width = max(len(g.name) for g in self.unit_groups)
            text += "\n\n" + "\n".join(
                [f"{'unit group'.ljust(width)}  units  live"]
                + [f"{g.name.ljust(width)}  {g.size:5d}  {g.live:4d}" for g in self.unit_groups]
            )
        if self.kept_whole:
            text += "\n\nUnits kept whole:\n" + "\n".join(
                f"  '{name}': {reason}" for name, reason in self.kept_whole
            )
        return text

    def __str__(self):
        return self.table()


def sparsity_summary(model, print_fn=print):
    """Reports the sparsity inference would use, per kernel and globally.

    Args:
        model: a Keras model, sparse or not (a stripped model reports the
            zeros folded into its kernels).
        print_fn: called with the table; None prints nothing.

    Returns:
        A `SparsityReport` with `.global_sparsity` and `.layers`.
    """
    rows = []
    nodes = [] if not is_sparse(model) else [
        tree.Node(model, (), (model.name,), None)
    ]
    nodes += list(tree.walk(model, stop=is_sparse))
    for node in nodes:
        layer = node.layer
        path = tree.path_string(node.name_path)
        if is_sparse(layer):
            rows.extend(
                _row(path, layer.layer, k.name, k.inference_value(), k.target, True)
                for k in layer.kernels
            )
        elif kernels_lib.is_supported(layer) and layer.built:
            for spec in kernels_lib.kernel_specs(layer):
                rows.append(
                    _row(path, layer, spec.name, getattr(layer, spec.attribute), None, False)
                )
        else:
            for variable in layer._trainable_variables:
                if len(variable.shape) >= 2:
                    name = variable.path.rsplit("/", 1)[-1]
                    rows.append(
                        _row(path, layer, name, variable, None, False, supported=False)
                    )
    report = SparsityReport(tuple(rows), *_unit_groups(model))
    if print_fn is not None:
        print_fn(report.table())
    return report


def _target_text(row):
    if not row.supported:
        return "unsupported"
    if not row.wrapped:
        return "dense"
    return "-" if row.target is None else f"{row.target:.2%}"


def _row(path, layer, name, value, target, wrapped, supported=True):
    array = ops.convert_to_numpy(value)
    return LayerSparsity(
        path=path,
        layer_type=type(layer).__name__,
        kernel=name,
        shape=tuple(array.shape),
        size=int(array.size),
        nonzero=int(np.count_nonzero(array)),
        target=target,
        wrapped=wrapped,
        supported=supported,
    )


def _unit_groups(model):
    """The unit groups of the coupled structures pruning `model`, and the
    layers whose units they keep (with why)."""
    wrappers = [node.layer for node in tree.walk(model, stop=is_sparse) if is_sparse(node.layer)]
    kinds = []
    for wrapper in wrappers:
        kind = getattr(getattr(wrapper.method, "structure", None), "coupled_kind", None)
        if kind and kind not in kinds:
            kinds.append(kind)
    kernels = {(id(k.layer), k.spec.attribute): k for w in wrappers for k in w.kernels}

    def value_of(coupling):
        kernel = kernels.get((id(coupling.layer), coupling.attribute))
        return coupling.variable if kernel is None else kernel.inference_value()

    groups, kept = [], {}
    for kind in kinds:
        found = dependency.analyze(model, kind)
        for group in found.groups:
            if not all((id(c.layer), c.attribute) in kernels for c in group.couplings if c.scored):
                continue
            live = dependency.live_units(group, value_of)
            if live is not None:
                groups.append(UnitGroupSparsity(group.name, group.size, int(live.sum())))
        kept.update(found.refused)
    return tuple(groups), tuple(kept.items())

