"""What masked methods need to know about the model's optimizer: its slots
(momentum, Adam's moments) aligned with each variable, and whether it keeps
a weight at exactly zero when the weight's gradient and slots are zero; and
building it before training, so TensorFlow traces the first step once."""

import keras

# Optimizers whose update of a weight is elementwise and exactly zero when
# the weight's gradient and its slots are zero (decoupled weight decay of a
# zero weight is zero too). Others (Muon orthogonalizes whole matrices,
# Adafactor and Ftrl mix in other state) may move a zero weight.
_ZERO_PRESERVING = tuple(
    getattr(keras.optimizers, name)
    for name in ("SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta", "Lion")
    if hasattr(keras.optimizers, name)
)


def training_optimizer(model):
    """The optimizer that updates the model's variables (the one inside a
    `LossScaleOptimizer`), or None."""
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", optimizer)


def build_before_training(model):
    """Builds the model's optimizer now, on the model's trainable weights,
    when Keras would otherwise build it while tracing the first training
    step.

    On TensorFlow without a distribution strategy, Keras builds the
    optimizer inside the first traced training step, and a `tf.function`
    that creates variables is traced twice (once to create them, once to
    run): building first halves the first step's tracing. Keras builds the
    same way under a distribution strategy and on the other backends: the
    same variables in the same order, so slots and checkpoints are
    unchanged. Done only for Keras's own `train_step` (which updates all
    of `model.trainable_weights`; a custom one may update a subset) and a
    model whose layers are all built (otherwise its variables are not
    known yet).

    Returns:
        Whether the optimizer was built by this call.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or optimizer.built or not model.built:
        return False
    if type(model).train_step is not keras.Model.train_step:
        return False
    if not all(layer.built for layer in model._flatten_layers()):
        return False
    optimizer.build(model.trainable_weights)
    return True


def keeps_zeros(optimizer):
    """Whether `optimizer` leaves a weight at exactly zero while its
    gradient and slots are zero (see `_ZERO_PRESERVING`); False for None
    and for optimizers that overwrite weights with averages (`use_ema`)."""
    if optimizer is None or getattr(optimizer, "use_ema", False):
        return False
    return type(optimizer) in _ZERO_PRESERVING


def optimizer_slots(model):
    """`{id(variable): [optimizer variables shaped like it]}` of the model's
    built optimizer (momentum, Adam's moments, ...), or {}."""
    optimizer = training_optimizer(model)
    if optimizer is None or not getattr(optimizer, "built", False):
        return {}
    variables = list(optimizer._trainable_variables)
    model_ids = {id(v) for v in variables}
    slots = {}
    for value in vars(optimizer).values():
        # Keras optimizers keep one list per kind of slot, aligned with the
        # trainable variables (None where a variable has no slot).
        if not isinstance(value, list) or len(value) != len(variables):
            continue
        for variable, slot in zip(variables, value):
            if (
                slot is not None
                and id(slot) not in model_ids
                and hasattr(slot, "assign")
                and tuple(slot.shape) == tuple(variable.shape)
            ):
                slots.setdefault(id(variable), []).append(slot)
    return slots
