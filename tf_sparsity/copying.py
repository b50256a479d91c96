"""Copying a live Keras model without its config.

`strip` copies a model by rebuilding it from its config. Most hand-written
subclassed models have no usable config (Keras captures no constructor
arguments for `keras.Model` subclasses), so for those `copy_model` copies
the live objects instead: every layer, variable and container of the model
is duplicated, with sharing preserved (a layer used twice is one layer in
the copy), its class, attributes and methods kept, and its training state
(optimizer, traced functions) left behind.

Python's `copy.deepcopy` cannot do this alone: Keras objects pickle through
their config (`KerasSaveable.__reduce__`), and Keras's tracked containers
re-track their items on insertion, which a built (locked) layer refuses.
So Keras objects, trackers and tracked containers are created empty first
and filled afterwards; everything else goes through `deepcopy` with those
copies in its memo.
"""

import copy
import types

import keras
from keras.src.saving.keras_saveable import KerasSaveable
from keras.src.utils import tracking

# Training state a copy does not take: it is compiled afresh if needed.
_LEFT_BEHIND = frozenset(
    {
        "optimizer",
        "train_function",
        "test_function",
        "predict_function",
        "_compile_loss",
        "_compile_metrics",
        "compiled_loss",
        "compiled_metrics",
        "_compile_config",
        "_compiled_trainable_state",
        "_tf_sparsity_mask_updater",
    }
)


def _left_behind(obj):
    return isinstance(obj, keras.optimizers.Optimizer)
_TRACKED_CONTAINERS = (tracking.TrackedList, tracking.TrackedDict, tracking.TrackedSet)


def copy_model(model):
    """An uncompiled copy of `model` sharing no state with it.

    Raises:
        ValueError: the model holds an object that cannot be copied (a
            TensorFlow resource of a tokenizer, say); the message names it.
    """
    memo = {}
    objects = _reachable(model, memo)
    for obj in objects:
        cls = type(obj)
        memo[id(obj)] = cls.__new__(cls) if isinstance(obj, _TRACKED_CONTAINERS) else object.__new__(cls)
    try:
        for obj in objects:
            _fill(obj, memo[id(obj)], memo)
    except Exception as error:  # deepcopy raises whatever an object raises.
        raise ValueError(
            f"Cannot copy model '{model.name}' ({type(model).__name__}): "
            f"{type(error).__name__}: {error}"
        ) from error
    for obj in objects:
        if isinstance(obj, tracking.Tracker):
            new = memo[id(obj)]
            new.stored_ids = {
                name: {id(memo[i]) for i in ids if i in memo}
                for name, ids in obj.stored_ids.items()
            }
    result = memo[id(model)]
    if hasattr(result, "compiled"):
        object.__setattr__(result, "compiled", False)
    return result


def _reachable(root, memo):
    """Keras objects, trackers and tracked containers reachable from `root`;
    objects left behind are entered in `memo` as None."""
    found, seen, stack = [], set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if _left_behind(obj):
            memo[id(obj)] = None
        elif isinstance(obj, types.ModuleType):
            memo[id(obj)] = obj  # Code, not state: shared.
        elif isinstance(obj, (KerasSaveable, tracking.Tracker)):
            found.append(obj)
            stack.extend(v for k, v in vars(obj).items() if k not in _LEFT_BEHIND)
        elif isinstance(obj, _TRACKED_CONTAINERS):
            found.append(obj)
            stack.append(obj.tracker)
            stack.extend(obj.values() if isinstance(obj, dict) else obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.FunctionType)):
            # Plain objects (a keras-hub sampler) can hold Keras objects too.
            stack.extend(vars(obj).values())
    return found


def _fill(obj, new, memo):
    state = {
        key: (None if key in _LEFT_BEHIND else value) for key, value in vars(obj).items()
    }
    # Builtin storage first, bypassing the tracking hooks of the subclass.
    if isinstance(obj, tracking.TrackedList):
        list.extend(new, copy.deepcopy(list(obj), memo))
    elif isinstance(obj, tracking.TrackedDict):
        dict.update(new, copy.deepcopy(dict(obj), memo))
    elif isinstance(obj, tracking.TrackedSet):
        set.update(new, copy.deepcopy(set(obj), memo))
    new.__dict__.update(copy.deepcopy(state, memo))
