"""`export_litert()`: a sparse model as a LiteRT (`.tflite`) file.

Unstructured zeros give no speed on CPUs: LiteRT stores a randomly sparse
weight compressed but densifies it when the model loads. What runs faster is
its block-sparse `FULLY_CONNECTED` kernel: float weights pruned in 1x4 blocks
(`tfs.Block((1, 4))` on `Dense` layers), int8 weights in 1x16 blocks. The
converter chooses the block layout itself, only when nearly all zeros form
whole blocks, so the report says what it chose for each kernel.
"""

import dataclasses
import os
import re

import keras
import numpy as np

from tf_sparsity import _backend
from tf_sparsity.sparsify import sparse_kernels
from tf_sparsity.strip import check_model
from tf_sparsity.strip import folded
from tf_sparsity.strip import warn_if_never_pruned

QUANTIZE_CHOICES = (None, "int8")
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")


@dataclasses.dataclass(frozen=True)
class LiteRTKernel:
    """How one weight tensor of a sparse layer is stored in the `.tflite`.

    Attributes:
        layer: the sparse layer's path in the Keras model.
        tensor: the tensor's name in the `.tflite` file.
        op: the LiteRT op that reads it (`FULLY_CONNECTED`, `CONV_2D`, ...).
        shape: the stored (LiteRT-layout) shape.
        storage: `"block-sparse RxC"` (run by the sparse kernel: faster),
            `"sparse, densified"` (stored compressed, densified at load: no
            speed-up) or `"dense"`.
        sparsity: fraction of zeros in the tensor.
    """

    layer: str
    tensor: str
    op: str
    shape: tuple
    storage: str
    sparsity: float

    @property
    def block_sparse(self):
        return self.storage.startswith("block-sparse")


@dataclasses.dataclass(frozen=True)
class LiteRTExport:
    """What `export_litert` wrote.

    Attributes:
        path: the `.tflite` file.
        size_bytes: its size.
        kernels: a `LiteRTKernel` per weight tensor of a sparse layer.
    """

    path: str
    size_bytes: int
    kernels: tuple

    def table(self):
        """The per-kernel report as text."""
        lines = [f"{self.path}: {self.size_bytes:,} bytes"]
        width = max([len(k.layer) for k in self.kernels] + [5])
        lines.append(f"{'layer':<{width}}  {'op':<17} {'sparsity':>8}  storage")
        for k in self.kernels:
            lines.append(f"{k.layer:<{width}}  {k.op:<17} {k.sparsity:>8.1%}  {k.storage}")
        return "\n".join(lines)


def export_litert(
    model,
    path,
    quantize=None,
    representative_data=None,
    input_signature=None,
    print_fn=print,
):
    """Writes `model`, stripped, as a `.tflite` file with sparse weights.

    The sparse kernels are folded in (as `tfs.strip` does) and the model is
    converted by Keras's LiteRT export with
    `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`: weights with enough zeros are
    stored sparse. LiteRT then runs float `Dense` kernels pruned in 1x4
    blocks (`tfs.Block((1, 4))`) and int8 ones in 1x16 blocks with its
    sparse kernel; other sparse weights are densified when the model loads.
    The returned report says, per kernel of each sparse layer, which it got.

    Needs the TensorFlow backend. Run the file with `ai-edge-litert`
    (`pip install tf_sparsity[litert]`):
    `ai_edge_litert.interpreter.Interpreter(model_path=path)`.

    Args:
        model: a sparse (or plain) Keras model.
        path: the output file; must end with `.tflite`.
        quantize: None (float32) or `"int8"` (full integer weights and
            activations, calibrated on `representative_data`; inputs and
            outputs stay float).
        representative_data: for `"int8"`: an array of input examples (or a
            list of per-input arrays), a few hundred are enough; or, as
            TFLite's converter takes it, a function returning an iterable
            (e.g. a generator function) that yields, per example, a list
            of input arrays with a batch dimension of 1.
        input_signature: optional input specs (for subclassed models that
            never saw their input shape).
        print_fn: prints the report (`None` for silence).

    Returns:
        A `LiteRTExport` (`.path`, `.size_bytes`, `.kernels`, `.table()`).
    """
    check_model(model, "export_litert")
    tf = _backend.require_tensorflow("LiteRT export")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "export_litert needs the TensorFlow backend (Keras's LiteRT export "
            f"converts a TensorFlow graph); this process runs on "
            f"'{keras.backend.backend()}'. Save the model (`tfs.save`) and "
            "export it from a process with KERAS_BACKEND=tensorflow."
        )
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"export_litert: `path` must end with '.tflite', got '{path}'.")
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(
            f"export_litert: `quantize` must be one of {QUANTIZE_CHOICES}, got {quantize!r}."
        )
    options = {"optimizations": [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]}
    if quantize == "int8":
        if representative_data is None:
            raise ValueError(
                'export_litert(quantize="int8") needs `representative_data`: '
                "input examples to calibrate the activations' ranges."
            )
        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY],
            "representative_dataset": _representative_dataset(representative_data),
        }
    warn_if_never_pruned(model, "export_litert")
    kernels = [
        (kernel.layer_path, kernel.wrapper.name, kernel.shape)
        for kernel in sparse_kernels(model)
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with folded(model):
        model.export(
            path, format="litert", input_signature=input_signature, verbose=False, **options
        )
    with open(path, "rb") as file:
        content = file.read()
    report = LiteRTExport(path, len(content), tuple(_kernels(content, kernels)))
    if print_fn is not None:
        print_fn(report.table())
    return report


def _representative_dataset(data):
    """The converter's `representative_dataset` (a function returning an
    iterable of per-example input lists) from `representative_data`."""
    if callable(data):
        return data  # Already what the converter takes.
    inputs = data if isinstance(data, (list, tuple)) else [data]
    try:
        inputs = [np.asarray(x, dtype="float32") for x in inputs]
    except (TypeError, ValueError) as error:
        raise TypeError(
            "export_litert: `representative_data` must be an array of input "
            "examples, a list of per-input arrays, or a function returning "
            f"an iterable of per-example input lists; got {type(data).__name__} "
            f"({error})."
        ) from None
    if not inputs or any(x.ndim == 0 or len(x) != len(inputs[0]) for x in inputs):
        raise ValueError(
            "export_litert: `representative_data` must hold the same number "
            "of examples (first dimension) for every input, at least one; "
            f"got shapes {[x.shape for x in inputs]}."
        )
    count = len(inputs[0])

    def examples():
        for i in range(count):
            yield [x[i : i + 1].astype("float32") for x in inputs]

    return examples


def _kernels(content, sparse_kernels):
    """The weight tensors of sparse layers and how each is stored.

    Args:
        content: the `.tflite` file's bytes.
        sparse_kernels: `(layer path, layer name, kernel shape)` of every
            sparse kernel, in model order.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    names = {
        code: name
        for name, code in vars(flatbuffer_utils.schema_fb.BuiltinOperator).items()
        if not name.startswith("_")
    }
    kernels = []
    unmatched = list(sparse_kernels)
    for subgraph in model.subgraphs:
        ops = [(names.get(_op_code(model, op), ""), op) for op in subgraph.operators]
        # A DENSIFY op turns a compressed weight back into a dense one.
        densify_source = {int(op.outputs[0]): int(op.inputs[0]) for n, op in ops if n == "DENSIFY"}
        for op_name, op in ops:
            if op_name not in _WEIGHT_OPS or len(op.inputs) < 2:
                continue
            weight = int(op.inputs[1])
            densified = weight in densify_source
            tensor = subgraph.tensors[densify_source.get(weight, weight)]
            tensor_name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            match = _kernel_of(tensor_name, tuple(tensor.shape), unmatched)
            if match is None:
                continue
            unmatched.remove(match)
            layer = match[0]
            kernels.append(
                LiteRTKernel(
                    layer=layer,
                    tensor=tensor_name,
                    op=op_name,
                    shape=tuple(int(d) for d in tensor.shape),
                    storage=_storage(tensor, densified),
                    sparsity=_zeros(model, tensor),
                )
            )
    return sorted(kernels, key=lambda k: k.layer)


def _op_code(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _storage(tensor, densified):
    sparsity = tensor.sparsity
    if sparsity is None:
        return "dense"
    if densified or sparsity.blockMap is None or len(sparsity.blockMap) == 0:
        return "sparse, densified"
    block = [1] * len(tensor.shape)
    dims = sparsity.dimMetadata
    for i, dim in enumerate(sparsity.blockMap):
        block[int(dim)] = int(dims[len(tensor.shape) + i].denseSize)
    return "block-sparse " + "x".join(map(str, block))


def _zeros(model, tensor):
    """Fraction of zeros of a weight tensor (sparse ones store only the
    non-zeros and their blocks)."""
    size = int(np.prod(tensor.shape))
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0 or size == 0:
        return 0.0
    itemsize = {0: 4, 9: 1, 1: 2}.get(int(tensor.type), 4)  # float32, int8, float16
    if tensor.sparsity is None:
        values = np.frombuffer(bytes(data), dtype=np.uint8).reshape(-1, itemsize)
        return float(np.mean(~values.any(axis=1)))
    nonzeros = np.frombuffer(bytes(data), dtype=np.uint8).reshape(-1, itemsize)
    return 1.0 - float(np.count_nonzero(nonzeros.any(axis=1))) / size


def _kernel_of(tensor_name, shape, candidates):
    """The sparse kernel a converted weight tensor came from.

    By the name scope its ops carry when it has one (`model/fc1_1/MatMul`:
    layer "fc1", the `_1` added by TensorFlow's name scopes), else by shape
    (LiteRT transposes kernels, so the dimensions are compared as a
    multiset), the first such kernel in model order.
    """
    scopes = set()
    for part in tensor_name.split(";"):
        for scope in part.split("/")[:-1]:
            scopes.add(scope)
            scopes.add(re.sub(r"_\d+$", "", scope))
    same_shape = [c for c in candidates if sorted(c[2]) == sorted(int(d) for d in shape)]
    named = [c for c in same_shape if c[1] in scopes]
    if named:
        return max(named, key=lambda c: len(c[0]))
    return same_shape[0] if same_shape else None
