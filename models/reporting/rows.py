"""Result rows: find them on disk, check them, and aggregate them over seeds.

A result row is one JSON object per training run, written as `DIR/result.json`
by `tf-sparsity train`, or in bulk by benchmark scripts (a JSON list of rows,
or a JSON-lines `*.jsonl` file with one row per line).

Which JSON files are rows. Directories are searched recursively for `*.json`
and `*.jsonl` files (hidden directories such as `.ipynb_checkpoints` are not
searched). A file is read as rows unless it is *clearly not* a result file:

- a file named `result.json` is always a row, so a broken one is an error;
- any other `*.json` or `*.jsonl` file is skipped when none of its JSON
  objects has a `task` key (e.g. benchmark machine-info files), or when it is
  a sweep grid spec (it has `methods` but no `method`);
- otherwise every object in the file must be a valid row: a row that lacks a
  required key, or has a value of the wrong type, raises a `ValueError` that
  names the file, the row and the key.

Rows are plain dicts and keep every key they were written with. The loader
adds one key, `SOURCE_KEY` ("_source"), holding the file the row came from.
"""

import collections
import dataclasses
import json
import math
import numbers
import pathlib
import statistics

REQUIRED_KEYS = (
    "task",
    "method",
    "target_sparsity",
    "global_sparsity",
    "steps",
    "wall_time_s",
)
METRIC_KEYS = ("top1", "top5", "bleu", "bleu_tokenized", "accuracy", "perplexity")
#: The key naming the metric a row's task is judged on (e.g. "top1").
MAIN_METRIC_KEY = "main_metric"
SOURCE_KEY = "_source"
RESULT_FILENAME = "result.json"

# Target sparsities are rounded to this many decimals before grouping: JSON
# floats written by different tools may differ in the last digits.
_SPARSITY_DECIMALS = 6


def find_result_files(paths):
    """Lists the JSON and JSON-lines files under `paths`.

    Args:
        paths: files or directories (str or `pathlib.Path`). Directories are
            searched recursively for `*.json` and `*.jsonl`.

    Returns:
        A sorted list of unique `pathlib.Path`s.

    Raises:
        ValueError: when a path does not exist, or a file given explicitly is
            neither `.json` nor `.jsonl`.
    """
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    found = set()
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            for candidate in path.rglob("*"):
                relative = candidate.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if candidate.is_file() and _is_json_file(candidate):
                    found.add(candidate)
        elif path.is_file():
            if not _is_json_file(path):
                raise ValueError(
                    f"{path}: not a result file (expected .json or .jsonl)"
                )
            found.add(path)
        else:
            raise ValueError(f"{path}: no such file or directory")
    return sorted(found)


def load_rows(paths):
    """Reads and checks the result rows under `paths`.

    Exactly identical rows (e.g. a run's `result.json` also copied into a
    benchmark's `results.jsonl`) are kept once.

    Args:
        paths: files or directories, as for `find_result_files`.

    Returns:
        A list of row dicts, in file order, each with `SOURCE_KEY` added.

    Raises:
        ValueError: on unreadable JSON or an invalid row (see module doc).
    """
    rows = []
    seen = set()
    for path in find_result_files(paths):
        for row in read_rows_file(path):
            fingerprint = json.dumps(row, sort_keys=True, default=str)
            if fingerprint in seen:
                continue
            seen.add(fingerprint)
            rows.append({**row, SOURCE_KEY: str(path)})
    return rows


def read_rows_file(path):
    """Reads the rows of one `.json` or `.jsonl` file.

    Args:
        path: the file.

    Returns:
        A list of validated row dicts; empty when the file is clearly not a
        result file (see module doc).

    Raises:
        ValueError: on unreadable JSON or an invalid row.
    """
    path = pathlib.Path(path)
    items = _read_json_items(path)
    if path.name != RESULT_FILENAME and not _looks_like_rows(items):
        return []
    if path.name == RESULT_FILENAME and len(items) != 1:
        raise ValueError(f"{path}: expected one JSON object, got {len(items)}")
    for where, item in items:
        validate_row(item, where=f"{path}{where}")
    return [item for _, item in items]


def validate_row(row, where="row"):
    """Checks that `row` has the required keys with values of the right type.

    Args:
        row: the candidate row.
        where: how to name the row in error messages (file and position).

    Raises:
        ValueError: naming `where` and the offending key.
    """
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {row!r}")
    for key in REQUIRED_KEYS:
        if key not in row:
            raise ValueError(f"{where}: missing required key '{key}'")
    for key in ("task", "method"):
        if not isinstance(row[key], str) or not row[key]:
            raise ValueError(f"{where}: '{key}' must be a non-empty string")
    target = row["target_sparsity"]
    # None: a run with no target (e.g. a regularizer-weight sweep that
    # landed between grid points); kept, but in no table cell.
    if target is not None and (not _is_number(target) or not 0.0 <= target < 1.0):
        raise ValueError(
            f"{where}: 'target_sparsity' must be a number in [0, 1) or null"
        )
    achieved = row["global_sparsity"]
    if not _is_number(achieved) or not 0.0 <= achieved <= 1.0:
        raise ValueError(
            f"{where}: 'global_sparsity' must be a number in [0, 1]"
        )
    if not isinstance(row["steps"], int) or isinstance(row["steps"], bool):
        raise ValueError(f"{where}: 'steps' must be an integer")
    if not _is_number(row["wall_time_s"]):
        raise ValueError(f"{where}: 'wall_time_s' must be a number")
    for key in METRIC_KEYS:
        if key in row and row[key] is not None and not _is_number(row[key]):
            raise ValueError(f"{where}: metric '{key}' must be a number")


def make_row(
    task,
    method,
    target_sparsity,
    global_sparsity,
    steps,
    wall_time_s,
    main_metric,
    metrics,
    **extra,
):
    """One result row: the schema every task, the demo and the benchmarks
    write, and `tf-sparsity report` reads.

    Args:
        task: the task ("resnet50", "lenet300", ...).
        method: the method's name ("dense" for none).
        target_sparsity: the target (None: a regularizer sweep that landed
            between targets, kept out of the tables).
        global_sparsity: the sparsity reached (`tfs.sparsity_summary`).
        steps: optimizer steps run.
        wall_time_s: seconds spent training.
        main_metric: the name of the metric the task is judged on; it must
            be a key of `metrics`.
        metrics: `{name: value}` (values may be None: not evaluated).
        **extra: further JSON-friendly fields (seed, hparams, layers, ...).

    Returns:
        The row, checked with `validate_row`.
    """
    if main_metric not in metrics:
        raise ValueError(
            f"main_metric {main_metric!r} is not among the metrics "
            f"{sorted(metrics)}"
        )
    row = {
        "task": task,
        "method": method,
        "target_sparsity": None if target_sparsity is None else float(target_sparsity),
        "global_sparsity": float(global_sparsity),
        "steps": int(steps),
        "wall_time_s": float(wall_time_s),
        MAIN_METRIC_KEY: main_metric,
        **{k: None if v is None else float(v) for k, v in metrics.items()},
        **extra,
    }
    validate_row(row)
    return row


def write_row(directory, row, filename=RESULT_FILENAME):
    """Writes `row` to `directory/filename` whole (write, then rename), so a
    run is finished exactly when its row exists. `directory` may be a
    `gs://` path (written with TensorFlow's gfile)."""
    text = json.dumps(row, indent=2)
    path = f"{str(directory).rstrip('/')}/{filename}"
    if "://" in str(directory):
        # Only remote storage (gs://) needs TensorFlow; `tf-sparsity report`
        # starts without it.
        import tensorflow as tf

        tf.io.gfile.makedirs(str(directory))
        with tf.io.gfile.GFile(path + ".tmp", "w") as f:
            f.write(text)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        return path
    pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
    temporary = pathlib.Path(path + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path


def main_metric(rows):
    """The metric the given rows declare as their task's (`main_metric`),
    the most common if they differ, or None when none declares one."""
    declared = [row[MAIN_METRIC_KEY] for row in rows if row.get(MAIN_METRIC_KEY)]
    if not declared:
        return None
    return collections.Counter(declared).most_common(1)[0][0]


def has_metric(row, metric):
    """Whether `row` holds a finite number for `metric`."""
    value = row.get(metric)
    return _is_number(value) and math.isfinite(value)


def resolve_metric(rows, task, metric=None):
    """Picks the metric to report for `task`.

    Args:
        rows: all rows (only those of `task` are looked at).
        task: the task name.
        metric: the metric asked for, or None for the task's main metric.
            When the task's main metric is in no row, the first of
            `METRIC_KEYS` that is present is used instead.

    Returns:
        The metric name, or None when `metric` was asked for and no row of
        `task` has it.

    Raises:
        ValueError: when `metric` is None and the rows of `task` have none
            of `METRIC_KEYS`.
    """
    task_rows = [row for row in rows if row["task"] == task]
    if metric is not None:
        if any(has_metric(row, metric) for row in task_rows):
            return metric
        return None
    declared = main_metric(task_rows)
    for candidate in ((declared,) if declared else ()) + METRIC_KEYS:
        if any(has_metric(row, candidate) for row in task_rows):
            return candidate
    raise ValueError(
        f"task '{task}': its rows have none of the metrics "
        f"{', '.join(METRIC_KEYS)}"
    )


def check_metric(rows, metric):
    """Checks that some row holds `metric`.

    Args:
        rows: row dicts.
        metric: a metric name, or None (always fine).

    Raises:
        ValueError: "unknown metric", listing the numeric keys rows have.
    """
    if metric is None or any(has_metric(row, metric) for row in rows):
        return
    present = sorted(
        {key for row in rows for key in row if has_metric(row, key)}
        - set(REQUIRED_KEYS)
        - {"seed"}
    )
    raise ValueError(
        f"unknown metric '{metric}': no result row has it (metrics in the "
        f"rows: {', '.join(present) or 'none'})"
    )


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """One (task, method, target sparsity) cell, aggregated over seeds.

    Attributes:
        task: the task.
        method: the sparsity method.
        target_sparsity: the target sparsity of the runs.
        metric: the metric aggregated.
        mean: mean of the metric over runs (None when no run has it).
        std: sample standard deviation over runs (0.0 for a single run).
        count: number of runs with the metric.
        global_sparsity: mean achieved global sparsity over all the runs.
        seeds: the seeds of the runs (those that recorded one), sorted.
        rows: the rows of the cell.
    """

    task: str
    method: str
    target_sparsity: float
    metric: str
    mean: object
    std: object
    count: int
    global_sparsity: float
    seeds: tuple
    rows: tuple = dataclasses.field(repr=False, compare=False, default=())


def group_rows(rows):
    """Groups rows by (task, method, target_sparsity).

    Args:
        rows: row dicts.

    Returns:
        A dict from (task, method, target_sparsity) to the list of its rows,
        in first-seen order. Target sparsities are rounded to 6 decimals;
        rows without a target (`null`) are left out.
    """
    groups = collections.defaultdict(list)
    for row in rows:
        if row["target_sparsity"] is None:
            continue
        key = (
            row["task"],
            row["method"],
            round(float(row["target_sparsity"]), _SPARSITY_DECIMALS),
        )
        groups[key].append(row)
    return dict(groups)


def aggregate(rows, metric=None):
    """Aggregates rows over seeds: mean, std and count of a metric per cell.

    Args:
        rows: row dicts (e.g. from `load_rows`).
        metric: the metric to aggregate, or None for each task's main metric
            (see `resolve_metric`). Tasks whose rows lack an explicitly
            asked metric are left out.

    Returns:
        A list of `Aggregate`s sorted by task, method and target sparsity.

    Raises:
        ValueError: when `rows` is empty, no row has `metric`, or (with
            `metric=None`) a task has none of `METRIC_KEYS`.
    """
    if not rows:
        raise ValueError("no result rows to aggregate")
    check_metric(rows, metric)
    metrics = {}
    results = []
    for (task, method, target), cell_rows in sorted(group_rows(rows).items()):
        if task not in metrics:
            metrics[task] = resolve_metric(rows, task, metric)
        task_metric = metrics[task]
        if task_metric is None:
            continue
        values = [
            float(row[task_metric])
            for row in cell_rows
            if has_metric(row, task_metric)
        ]
        seeds = sorted(
            row["seed"] for row in cell_rows if isinstance(row.get("seed"), int)
        )
        results.append(
            Aggregate(
                task=task,
                method=method,
                target_sparsity=target,
                metric=task_metric,
                mean=statistics.fmean(values) if values else None,
                std=_sample_std(values),
                count=len(values),
                global_sparsity=statistics.fmean(
                    float(row["global_sparsity"]) for row in cell_rows
                ),
                seeds=tuple(seeds),
                rows=tuple(cell_rows),
            )
        )
    return results


def _sample_std(values):
    # Sample (n - 1) deviation: seeds are a sample of the runs one could do.
    if len(values) > 1:
        return statistics.stdev(values)
    return 0.0 if values else None


def _is_json_file(path):
    return path.suffix in (".json", ".jsonl")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _read_json_items(path):
    """Returns [(position, value)] for the JSON values of a file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read: {error}") from None
    if path.suffix == ".jsonl":
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                value = _parse_json(line, f"{path}:{number}")
                items.append((f":{number}", value))
        return items
    value = _parse_json(text, str(path))
    if isinstance(value, list):
        return [(f"[{index}]", item) for index, item in enumerate(value)]
    return [("", value)]


def _parse_json(text, where):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON: {error}") from None


def _looks_like_rows(items):
    """Applies the skip rule of the module doc to a file's JSON values."""
    objects = [item for _, item in items if isinstance(item, dict)]
    if not any("task" in item for item in objects):
        return False
    is_sweep_spec = all(
        "methods" in item and "method" not in item for item in objects
    )
    return not is_sweep_spec
