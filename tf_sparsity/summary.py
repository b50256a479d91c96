"""`sparsity_summary()`: how sparse a model is, layer by layer."""

import dataclasses

import numpy as np
from keras import ops

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
class SparsityReport:
    """Per-kernel sparsity of a model and its global sparsity.

    Global sparsity is the fraction of zeros over the kernels of every
    supported layer (layers kept dense count with all their weights) and the
    matrices (rank >= 2 weights) of layers that cannot be made sparse, such
    as keras-hub's `PositionEmbedding`, which count as dense.
    """

    layers: tuple

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
        return "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])

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
    report = SparsityReport(tuple(rows))
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
