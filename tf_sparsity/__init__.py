"""tf_sparsity: the methods of "The State of Sparsity in Deep Neural Networks"
(Gale, Elsen & Hooker, 2019) for Keras 3.

```python
import keras, tf_sparsity as tfs
schedule = tfs.PolynomialDecay(final_sparsity=0.9, begin_step=1000,
                               end_step=8000, frequency=100)
sparse = tfs.sparsify(model, tfs.MagnitudePruning(schedule))
sparse.compile(...); sparse.fit(..., callbacks=[tfs.SparsityCallback()])
tfs.sparsity_summary(sparse)
tfs.export_saved_model(sparse, "export/1")
```
"""

__version__ = "0.2.0"

# The whole API, always: importing it registers the layers with
# `keras.saving`, so saved sparse models load after `import tf_sparsity`.
from tf_sparsity.callbacks import SparsityCallback
from tf_sparsity.distributions import ERK
from tf_sparsity.distributions import PerLayer
from tf_sparsity.distributions import SparsityDistribution
from tf_sparsity.distributions import Uniform
from tf_sparsity.export import export_saved_model
from tf_sparsity.layers import KernelSpec
from tf_sparsity.layers import SparseKernel
from tf_sparsity.layers import SparseWrapper
from tf_sparsity.layers import register_sparsifiable
from tf_sparsity.litert import export_litert
from tf_sparsity.methods import REGISTRY as METHODS
from tf_sparsity.mask_files import load_masks
from tf_sparsity.mask_files import read_masks
from tf_sparsity.mask_files import save_masks
from tf_sparsity.methods import FixedMask
from tf_sparsity.methods import L0Regularization
from tf_sparsity.methods import MagnitudePruning
from tf_sparsity.methods import DynamicSparseMethod
from tf_sparsity.methods import MaskedMethod
from tf_sparsity.methods import MaskState
from tf_sparsity.methods import PruningMethod
from tf_sparsity.methods import RandomPruning
from tf_sparsity.methods import RegularizedMethod
from tf_sparsity.methods import RigL
from tf_sparsity.methods import SET
from tf_sparsity.methods import SparsityMethod
from tf_sparsity.methods import VariationalDropout
from tf_sparsity.methods import make as make_method
from tf_sparsity import oneshot
from tf_sparsity.oneshot import prune_oneshot
from tf_sparsity.saving import load
from tf_sparsity.saving import save
from tf_sparsity.schedules import ConstantSparsity
from tf_sparsity.schedules import OneShot
from tf_sparsity.schedules import PolynomialDecay
from tf_sparsity.schedules import Ramp
from tf_sparsity.schedules import SparsitySchedule
from tf_sparsity.shrink import shrink
from tf_sparsity.sparsify import sparse_kernels
from tf_sparsity.sparsify import sparse_layers
from tf_sparsity.sparsify import sparsify
from tf_sparsity.strip import strip
from tf_sparsity.structures import NM
from tf_sparsity.structures import Block
from tf_sparsity.structures import Heads
from tf_sparsity.structures import Structure
from tf_sparsity.structures import Units
from tf_sparsity.structures import Unstructured
from tf_sparsity.summary import LayerSparsity
from tf_sparsity.summary import SparsityReport
from tf_sparsity.summary import sparsity_summary
from tf_sparsity import tuning
from tf_sparsity.tuning import choose
from tf_sparsity.tuning import set_threshold
from tf_sparsity.tuning import sweep_threshold
from tf_sparsity.tuning import sweep_weight
from tf_sparsity.updater import update_masks
