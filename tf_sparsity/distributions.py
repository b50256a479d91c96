"""How a model-wide sparsity target is spread over layers.

A distribution maps every sparsifiable layer of the model to its final
sparsity. Global sparsity is always counted over the kernels of *all*
supported layers of the model (layers kept dense count as fully dense), which
is also how `tfs.sparsity_summary` reports it.
"""

import math
import numbers

import keras

from tf_sparsity import selection

_PACKAGE = "tf_sparsity"


def _check_target(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: sparsity for {name!r} must be a number, got {value!r}."
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{owner}: sparsity for {name!r} must be in [0, 1), got {value!r}."
        )


class SparsityDistribution:
    """Base class: maps layers to final sparsities.

    Args:
        dense: names, regexes or layer types kept dense (not wrapped).
    """

    def __init__(self, dense=()):
        self.dense = selection.as_list(dense)
        for pattern in self.dense:
            if not isinstance(pattern, (str, type)):
                raise TypeError(
                    f"{type(self).__name__}: `dense` entries must be layer "
                    f"names, regexes or types, got {pattern!r}."
                )

    def layer_sparsities(self, infos, target):
        """Final sparsity of each layer.

        Args:
            infos: `LayerInfo` of every sparsifiable layer of the model;
                those with `selected=False` are fixed dense.
            target: the method's final sparsity (None for methods without a
                schedule, which only use the distribution to pick layers).

        Returns:
            A list of floats aligned with `infos`; 0.0 means "keep dense".
        """
        raise NotImplementedError

    def _dense_set(self, infos):
        kept = selection.match_all(self.dense, infos, f"{type(self).__name__}(dense=...)")
        return {id(info) for info in kept}

    def get_config(self):
        if any(isinstance(p, type) for p in self.dense):
            raise ValueError(
                "Distributions that select layers by type cannot be "
                "serialized; use names or regexes."
            )
        return {"dense": list(self.dense)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Uniform(SparsityDistribution):
    """Every selected layer at the schedule's sparsity.

    Args:
        dense: names, regexes or types of layers kept dense (the paper keeps
            ResNet-50's first convolution dense).
        targets: optional dict `{name_or_regex: sparsity}` giving some layers
            their own final sparsity (e.g. the last layer at 0.8).
    """

    def __init__(self, dense=(), targets=None):
        super().__init__(dense)
        self.targets = dict(targets or {})
        for name, value in self.targets.items():
            _check_target("Uniform", name, value)

    def layer_sparsities(self, infos, target):
        dense = self._dense_set(infos)
        overrides = {}
        for pattern, value in self.targets.items():
            for info in selection.match_all([pattern], infos, "Uniform(targets=...)"):
                overrides[id(info)] = value
        result = []
        for info in infos:
            if not info.selected or id(info) in dense:
                result.append(0.0)
            elif id(info) in overrides:
                result.append(overrides[id(info)])
            else:
                result.append(target)
        return result

    def get_config(self):
        return {**super().get_config(), "targets": dict(self.targets)}


def erdos_renyi_score(shapes):
    """Erdos-Renyi-Kernel density score: sum of dims over product of dims.

    For a Dense kernel (n_in, n_out) this is (n_in + n_out) / (n_in * n_out);
    convolution kernels include their spatial dimensions.
    """
    return sum(sum(shape) for shape in shapes) / sum(
        math.prod(shape) for shape in shapes
    )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ERK(SparsityDistribution):
    """Erdos-Renyi-Kernel: density proportional to `sum(shape) / prod(shape)`.

    Densities are scaled by one factor solved so that the global sparsity
    equals the target; a layer that would exceed density 1 is made dense and
    the factor is solved again over the rest (Evci et al., 2020).

    Args:
        dense: names, regexes or types of layers kept dense.
    """

    def layer_sparsities(self, infos, target):
        if target is None:
            raise ValueError("ERK needs a method with a sparsity schedule.")
        dense = self._dense_set(infos)
        total = sum(info.size for info in infos)
        # Layers at density 1: unselected, kept dense, or saturated below.
        saturated = {
            id(info) for info in infos if not info.selected or id(info) in dense
        }
        scale = 0.0
        while True:
            free = [info for info in infos if id(info) not in saturated]
            budget = (1.0 - target) * total - sum(
                info.size for info in infos if id(info) in saturated
            )
            if not free or budget <= 0:
                break
            scale = budget / sum(
                erdos_renyi_score(info.shapes) * info.size for info in free
            )
            over = [i for i in free if scale * erdos_renyi_score(i.shapes) >= 1]
            if not over:
                break
            saturated.update(id(info) for info in over)
        result = [
            0.0
            if id(info) in saturated
            else 1.0 - scale * erdos_renyi_score(info.shapes)
            for info in infos
        ]
        reached = _global(infos, result)
        if abs(reached - target) > 1e-6 or max(result, default=0.0) >= 1.0:
            kept = [i for i in infos if id(i) in saturated]
            share = sum(i.size for i in kept) / max(total, 1)
            raise ValueError(
                f"ERK cannot reach global sparsity {target}: the layers at "
                f"density 1 ({', '.join(i.path for i in kept)}) hold "
                f"{share:.1%} of the model's sparsifiable weights."
            )
        return result


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PerLayer(SparsityDistribution):
    """Explicit final sparsities for some layers; the rest solved uniformly.

    Layers matched by `targets` get their value. The other selected layers
    share one sparsity, solved so that the global sparsity equals the
    schedule's target. If every selected layer is matched, their values must
    give that global sparsity (within 0.5%).

    Args:
        targets: dict `{name_or_regex: sparsity}`; 0.0 keeps a layer dense.
        dense: names, regexes or types of layers kept dense.
    """

    def __init__(self, targets, dense=()):
        super().__init__(dense)
        if not isinstance(targets, dict) or not targets:
            raise TypeError(
                "PerLayer expects a non-empty dict {name_or_regex: sparsity}, "
                f"got {targets!r}."
            )
        for name, value in targets.items():
            _check_target("PerLayer", name, value)
        self.targets = dict(targets)

    def layer_sparsities(self, infos, target):
        dense = self._dense_set(infos)
        fixed = {}
        for pattern, value in self.targets.items():
            for info in selection.match_all([pattern], infos, "PerLayer"):
                fixed[id(info)] = value
        result = [
            0.0 if (not i.selected or id(i) in dense) else fixed.get(id(i))
            for i in infos
        ]
        free = [i for i, value in zip(infos, result) if value is None]
        if target is None:  # Methods without a schedule: just pick layers.
            return result
        total = sum(info.size for info in infos)
        if not free:
            reached = _global(infos, result)
            if abs(reached - target) > 0.005:
                raise ValueError(
                    f"PerLayer targets give a global sparsity of {reached:.4f}, "
                    f"but the schedule asks for {target}. Change the targets "
                    "or the schedule's final sparsity, or leave some layers "
                    "unmatched so their sparsity is solved."
                )
            return result
        fixed_zeros = sum(
            info.size * value
            for info, value in zip(infos, result)
            if value is not None
        )
        free_size = sum(info.size for info in free)
        shared = (target * total - fixed_zeros) / free_size
        if not 0.0 <= shared < 1.0:
            raise ValueError(
                f"PerLayer cannot reach global sparsity {target}: the layers "
                f"not in `targets` ({', '.join(i.path for i in free)}) would "
                f"need sparsity {shared:.4f}, outside [0, 1)."
            )
        return [shared if value is None else value for value in result]

    def get_config(self):
        return {**super().get_config(), "targets": dict(self.targets)}


def _global(infos, sparsities):
    total = sum(info.size for info in infos)
    return sum(i.size * s for i, s in zip(infos, sparsities)) / max(total, 1)


def get(identifier):
    if identifier is None:
        return Uniform()
    if isinstance(identifier, SparsityDistribution):
        return identifier
    raise TypeError(
        "Expected a distribution such as tfs.Uniform(), tfs.ERK() or "
        f"tfs.PerLayer({{...}}), got {identifier!r}."
    )
