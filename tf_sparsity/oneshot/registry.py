"""One-shot methods by name; adding a method is one file and one line here."""

from tf_sparsity.oneshot.magnitude import OneShotMagnitude
from tf_sparsity.oneshot.sparsegpt import SparseGPT
from tf_sparsity.oneshot.wanda import Wanda

REGISTRY = {
    OneShotMagnitude.name: OneShotMagnitude,
    Wanda.name: Wanda,
    SparseGPT.name: SparseGPT,
}
