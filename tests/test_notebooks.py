"""The tutorial notebooks in notebooks/: committed stripped, in sync with
their sources, and executed top to bottom with small parameters.

Each notebook has one code cell tagged `parameters`; the test inserts a cell
after it that overrides some of those values (as papermill does), runs the
notebook in a fresh kernel with nbclient in a temporary directory, and fails
on any error (the notebooks `assert` what they show, e.g. the sparsity
reached). The kernel is this interpreter, so it sees this environment's
tf_sparsity, and `tf-sparsity` / `saved_model_cli` are on its PATH. Set
NOTEBOOKS_EXECUTED_DIR to keep the executed notebooks (with outputs).
"""

import importlib.util
import json
import os
import pathlib
import re
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"

# Small settings for CI: a few minutes for all notebooks on 2 CPU cores.
SMALL = {
    # Section 3 without magnitude from scratch: section 2 trains magnitude pruning.
    "quickstart": {"TRAIN_IMAGES": 2000, "EPOCHS": 2, "FINETUNE_EPOCHS": 1,
                   "METHODS": ["random", "variational_dropout", "l0"]},
    "your_model": {"TRAIN_IMAGES": 1000, "EPOCHS": 1},
    "serving": {"TRAIN_IMAGES": 1000, "EPOCHS": 1, "HIDDEN": 512, "TIMING_ROUNDS": 3},
    "learned_masks": {"TRAIN_IMAGES": 1000, "EPOCHS": 2, "SPARSITIES": [0.9]},
    # One tiny ResNet run through the CLI; the Transformer's runs are the same
    # code with another --task (its CLI runs end to end in test_transformer_train).
    "reference_tasks": {"SIZE": "tiny", "METHODS": ["magnitude"], "TASKS": ["resnet50"]},
    "llm_oneshot": {"TRAIN_EPOCHS": 2, "NUM_SAMPLES": 32, "SEQUENCE_LENGTH": 32,
                    "EVAL_WINDOWS": 48, "STRUCTURES": ["unstructured"]},
    "methods": {"TRAIN_IMAGES": 2000, "EPOCHS": 2, "SPARSITIES": [0.9],
                "VD_FACTORS": [0.1, 1.0], "L0_FACTORS": [1.0], "THRESHOLDS": [0.0, 3.0, 5.0]},
}

NAMES = sorted(path.stem for path in NOTEBOOK_DIR.glob("*.ipynb"))


def _load(name):
    import nbformat

    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _parameters_index(notebook):
    tagged = [i for i, cell in enumerate(notebook.cells)
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    assert notebook.cells[tagged[0]].cell_type == "code"
    return tagged[0]


def test_every_notebook_has_small_parameters():
    assert NAMES, "no notebooks found"
    assert sorted(SMALL) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stripped_and_well_formed(name):
    notebook = _load(name)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"cell {index} has committed outputs"
            assert cell.get("execution_count") is None, f"cell {index} has an execution count"
    first = notebook.cells[0].source
    assert first.startswith("# "), "the first cell is the title"
    badge = ("https://colab.research.google.com/github/tf-sparsity/tf_sparsity/"
             f"blob/main/notebooks/{name}.ipynb")
    assert badge in first, "the title cell has an Open-in-Colab badge for this notebook"
    install = notebook.cells[1]
    assert install.cell_type == "code" and "%pip install" in install.source
    version = re.search(r'^__version__ = "([^"]+)"',
                        (ROOT / "tf_sparsity" / "__init__.py").read_text(), re.M).group(1)
    assert f"tf_sparsity.git@v{version}" in install.source, "installs the tag of this version"
    assert f'Version(before["tf_sparsity"]) < Version("{version}")' in install.source, (
        "replaces an older tf_sparsity")
    parameters = notebook.cells[_parameters_index(notebook)].source
    for key in SMALL[name]:
        assert f"\n{key} =" in f"\n{parameters}", f"{key} is not set in the parameters cell"


def test_notebooks_match_their_sources():
    spec = importlib.util.spec_from_file_location("_notebook_build", NOTEBOOK_DIR / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert build.names() == NAMES, "every notebook has a source in notebooks/_src and vice versa"
    for name in NAMES:
        committed = (NOTEBOOK_DIR / f"{name}.ipynb").read_text(encoding="utf-8")
        assert committed == build.build(name), (
            f"notebooks/{name}.ipynb differs from notebooks/_src/{name}.ipy: edit the "
            "source and run `python notebooks/_build.py`")


def _kernel_environment(tmp_path, monkeypatch):
    """A kernel spec for this interpreter, found first, and its bin on PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    notebook = _load(name)
    overrides = "\n".join(f"{key} = {value!r}" for key, value in SMALL[name].items())
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by tests/test_notebooks.py\n" + overrides,
        metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(_parameters_index(notebook) + 1, injected)
    _kernel_environment(tmp_path, monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    start = time.time()
    try:
        client.execute()  # Raises CellExecutionError, with the cell and traceback.
    finally:
        print(f"{name}: {time.time() - start:.1f} s")
        # To look at what CI ran (outputs, plots): set NOTEBOOKS_EXECUTED_DIR.
        if os.environ.get("NOTEBOOKS_EXECUTED_DIR"):
            out = pathlib.Path(os.environ["NOTEBOOKS_EXECUTED_DIR"])
            out.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, out / f"{name}.ipynb")
