"""Reports and sweeps over training results ("result rows").

- `rows`: find, check and aggregate result rows (`result.json`, `*.jsonl`).
- `report`: `write_report()`: markdown tables and frontier / layer plots.
- `paper`: the published results of Gale, Elsen & Hooker (2019).
- `sweep`: expand a grid spec into `tf-sparsity train` runs; run or print.
- `cli`: the `tf-sparsity report` and `tf-sparsity sweep` subcommands.

Its modules use only the standard library and matplotlib: `tf-sparsity
report` and `tf-sparsity sweep` start without loading Keras or TensorFlow
(see `tf_sparsity_models.cli`).
"""

from tf_sparsity_models.reporting.cli import add_report_parser
from tf_sparsity_models.reporting.cli import add_sweep_parser
from tf_sparsity_models.reporting.report import write_report
from tf_sparsity_models.reporting.rows import Aggregate
from tf_sparsity_models.reporting.rows import aggregate
from tf_sparsity_models.reporting.rows import find_result_files
from tf_sparsity_models.reporting.rows import load_rows
from tf_sparsity_models.reporting.rows import main_metric
from tf_sparsity_models.reporting.rows import validate_row
from tf_sparsity_models.reporting.sweep import expand_grid
from tf_sparsity_models.reporting.sweep import load_spec
from tf_sparsity_models.reporting.sweep import run_sweep
