"""`prune_oneshot()`: prune a trained model once, from a calibration set."""

import contextlib
import warnings

import keras
import numpy as np
from keras import ops

from tf_sparsity import _validation as validate
from tf_sparsity import selection
from tf_sparsity import sparsify as sparsify_lib
from tf_sparsity import tree
from tf_sparsity.layers import kernels as kernels_lib
from tf_sparsity.methods import FixedMask
from tf_sparsity.oneshot import base
from tf_sparsity.oneshot import calibration
from tf_sparsity.oneshot.linear import LinearView
from tf_sparsity.oneshot.registry import REGISTRY


def prune_oneshot(
    model,
    method,
    calibration_data=None,
    sparsity=0.5,
    structure=None,
    layers=None,
    num_samples=128,
    blocksize=128,
    percdamp=0.01,
    batch_size=8,
    verbose=1,
):
    """Prunes a trained model in one shot: magnitude, Wanda or SparseGPT.

    The chosen layers are wrapped with `tfs.FixedMask` (in place, as
    `tfs.sparsify` does: the model keeps its class, so a keras-hub
    `CausalLM` still generates) and each gets its pruned weights and mask.
    Fine-tuning the result keeps the pattern; `strip`, `export_saved_model`,
    `export_litert`, `tfs.save`/`tfs.load` and `sparsity_summary` work as for
    any sparse model.

    Calibration runs block by block, as the reference implementations do:
    each block (a keras-hub transformer layer, or a top-level layer of a
    functional model) sees the calibration inputs computed through the
    already-pruned blocks before it, its layers are pruned from their own
    inputs, and only one block's activations are held at a time.

    Args:
        model: a built Keras model (a keras-hub `CausalLM` or `Backbone`,
            or any functional, Sequential or subclassed model).
        method: `"magnitude"` (|w| per layer), `"wanda"` (|w| * ||x_j||_2
            per output row) or `"sparsegpt"` (second-order reconstruction),
            or a `tfs.oneshot.OneShotMethod` instance (then `sparsity`,
            `structure`, `blocksize` and `percdamp` are its own).
        calibration_data: model inputs for the calibration pass (not read by
            `"magnitude"`): a NumPy array, tensor or dict of them, a
            `tf.data.Dataset` or any iterable of input batches, or strings
            for a model with a `preprocessor`; token ids for a keras-hub
            model get a padding mask of ones.
        sparsity: the fraction of each pruned layer's weights to remove.
        structure: `tfs.Unstructured()` (default), `tfs.NM(2, 4)` /
            `tfs.NM(4, 8)` (then `sparsity` must be 1 - n/m), or
            `tfs.Block((rows, cols))`.
        layers: which layers to prune, as in `tfs.sparsify` (names, regexes,
            types or layer objects). None: for a keras-hub model, every
            Dense and EinsumDense inside its transformer layers (attention
            projections and feed-forward layers; embeddings and the output
            head stay dense); for other models, every supported layer
            (Dense and EinsumDense for the calibrated methods).
        num_samples: calibration samples (sequences) to use.
        blocksize: SparseGPT's lazy block and mask-selection block.
        percdamp: SparseGPT's dampening of H, a fraction of its mean
            diagonal.
        batch_size: samples per forward pass during calibration (when
            `calibration_data` is split here).
        verbose: 1 shows a progress bar over the blocks.

    Returns:
        The sparse model (`model` itself).

    Raises:
        ValueError: an unknown method, bad arguments, a layer the method
            cannot prune (named), calibration data the model cannot take, or
            a layer the calibration data never reached.
    """
    method = _method(method, sparsity, structure, blocksize, percdamp)
    if not isinstance(model, keras.Model):
        raise TypeError(f"prune_oneshot expects a Keras model, got {model!r}.")
    if sparsify_lib.sparse_layers(model):
        raise ValueError(
            f"Model '{model.name}' is already sparse. prune_oneshot prunes a "
            "dense trained model; call `tfs.strip(model)` first."
        )
    num_samples = validate.integer("prune_oneshot", "num_samples", num_samples, minimum=1)
    batch_size = validate.integer("prune_oneshot", "batch_size", batch_size, minimum=1)
    if method.needs_calibration:
        if calibration_data is None:
            raise ValueError(
                f"prune_oneshot: method '{method.name}' reads the layers' inputs, "
                "so it needs `calibration_data` (e.g. 128 sequences of token ids)."
            )
        batches = calibration.calibration_batches(model, calibration_data, num_samples, batch_size)
    selected = _default_layers(model, method) if layers is None else layers
    # Every check runs before the model changes: an error leaves it as it was.
    chosen = _chosen_layers(model, selected)
    views = {}
    for info in chosen:
        where = f"layer '{info.path}'"
        if method.needs_calibration:
            views[id(info.layer)] = LinearView(info.layer, where)
            method.check_layer(where, views[id(info.layer)])
        else:
            for spec in kernels_lib.kernel_specs(info.layer):
                kernel = getattr(info.layer, spec.attribute)
                method.structure.check(where, kernel.shape, spec.resolve_input_axis(info.layer), method.sparsity)
    sparsify_lib.sparsify(model, FixedMask(), layers=selected)
    wrapped = sparsify_lib.sparse_layers(model)
    wrappers = [wrapper for _, wrapper in wrapped]
    paths = {id(wrapper): path for path, wrapper in wrapped}
    views = {id(w): views[id(w.layer)] for w in wrappers if id(w.layer) in views}

    progress = keras.utils.Progbar(len(wrappers), verbose=verbose, unit_name="layer")
    if not method.needs_calibration:
        for wrapper in wrappers:
            for kernel in wrapper.kernels:
                keep = method.prune_kernel(kernel.variable, kernel.input_axis)
                _assign(kernel, kernel.variable * ops.cast(keep, kernel.variable.dtype), keep)
            progress.add(1)
        return model

    pending = {id(w): w for w in wrappers}

    def process_block(block, run):
        inside = [w for w in _wrappers_in(block) if id(w) in pending]
        statistics = {
            id(w): base.InputStatistics(views[id(w)], method.second_moment) for w in inside
        }
        with _observing(inside, statistics):
            run()
        for wrapper in inside:
            stats = statistics[id(wrapper)]
            if stats.num_samples == 0:
                continue
            _prune_wrapper(method, wrapper, views[id(wrapper)], stats, paths[id(wrapper)])
            del pending[id(wrapper)]
            progress.add(1)
        return run()

    calibration.run_blocks(model, batches, pending, process_block)
    if pending:
        names = ", ".join(f"'{paths[key]}'" for key in pending)
        raise ValueError(
            f"prune_oneshot: the calibration data never reached layer(s) {names} "
            f"of model '{model.name}' (they are not called in its forward pass), "
            "so they could not be pruned. Leave them out with `layers=`."
        )
    return model


def _method(method, sparsity, structure, blocksize, percdamp):
    if isinstance(method, base.OneShotMethod):
        return method
    if not isinstance(method, str) or method.lower() not in REGISTRY:
        raise ValueError(
            f"prune_oneshot: unknown method {method!r}; choose one of "
            f"{sorted(REGISTRY)} or pass a tfs.oneshot.OneShotMethod."
        )
    cls = REGISTRY[method.lower()]
    if cls.second_moment:
        return cls(sparsity, structure, blocksize=blocksize, percdamp=percdamp)
    return cls(sparsity, structure)


def _default_layers(model, method):
    """The layers pruned when `layers=None` (see `prune_oneshot`)."""
    backbone = getattr(model, "backbone", model)
    blocks = getattr(backbone, "transformer_layers", None)
    linear = (keras.layers.Dense, keras.layers.EinsumDense)
    if blocks:
        return [
            node.layer
            for block in blocks
            for node in tree.walk(block)
            if isinstance(node.layer, linear)
        ] or None
    if not method.needs_calibration:
        return None
    chosen, skipped = [], []
    for node in tree.walk(model):
        if not kernels_lib.is_supported(node.layer):
            continue
        if isinstance(node.layer, linear):
            chosen.append(node.layer)
        else:
            skipped.append(f"'{tree.path_string(node.name_path)}' ({type(node.layer).__name__})")
    if chosen and skipped:
        warnings.warn(
            f"prune_oneshot: method '{method.name}' prunes Dense and EinsumDense "
            f"layers; these stay dense: {', '.join(skipped)}. Prune them with "
            "method='magnitude' (`layers=` selects which).",
            stacklevel=3,
        )
    if not chosen:
        raise ValueError(
            f"prune_oneshot: model '{model.name}' has no Dense or EinsumDense "
            f"layer for method '{method.name}'; use method='magnitude' for "
            "other layer types."
        )
    return chosen


def _chosen_layers(model, selected):
    """The `LayerInfo`s of the layers `sparsify(model, ..., layers=selected)`
    would wrap (an unmatched selector is left for `sparsify` to report)."""
    infos = sparsify_lib.layer_infos(model)
    if selected is None:
        return infos
    selectors = selection.as_list(selected)
    return [info for info in infos if any(selection.matches(s, info) for s in selectors)]


def _wrappers_in(layer):
    if sparsify_lib.is_sparse(layer):
        return [layer]
    return [node.layer for node in tree.walk(layer, stop=sparsify_lib.is_sparse) if sparsify_lib.is_sparse(node.layer)]


def _observing(wrappers, statistics):
    """A context in which every call of `wrappers` feeds its inputs into
    their statistics."""
    stack = contextlib.ExitStack()
    for wrapper in wrappers:
        stack.enter_context(wrapper.observe_inputs(statistics[id(wrapper)].update))
    return stack


def _prune_wrapper(method, wrapper, view, statistics, path):
    (kernel,) = wrapper.kernels
    matrix = view.matrix(kernel.variable)
    new_matrix, keep = method.prune_matrix(matrix, statistics)
    if not np.all(np.isfinite(ops.convert_to_numpy(new_matrix))):
        raise ValueError(
            f"prune_oneshot: {method.name} gave non-finite weights for layer "
            f"'{path}': its calibration inputs contain inf/NaN, or (SparseGPT) "
            "their second moment is too ill-conditioned; raise `percdamp`."
        )
    _assign(kernel, view.kernel(new_matrix), view.kernel(keep))


def _assign(kernel, value, keep):
    kernel.variable.assign(ops.cast(value, kernel.variable.dtype))
    kernel.state.mask.assign(ops.cast(keep, kernel.state.mask.dtype))
