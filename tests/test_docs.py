"""The documentation site (`mkdocs.yml`, `docs/`).

Every public name of `tf_sparsity` has a docstring and a `::: ...` entry in
the API reference (`docs/api/*.md`), and `mkdocs build --strict` passes:
broken links, anchors and references, and docstrings that mkdocstrings
cannot parse, fail it. The build needs the `docs` extra
(`pip install -e ".[docs]"`) and is skipped without it.
"""

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
# Modules documented beside the package when they exist.
OPTIONAL_MODULES = {"tf_sparsity.compat.tfmot": ("tf_sparsity/compat/tfmot.py", "tf_sparsity/compat/tfmot/__init__.py")}
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter")


def public_names(path=ROOT / "tf_sparsity" / "__init__.py", package="tf_sparsity"):
    """Public name -> the dotted path it is imported from, read from the
    package's `__init__.py` (its `__all__` if it has one, else every public
    name it imports). Static: importing nothing."""
    tree = ast.parse(path.read_text())
    imported = {}
    declared = None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                imported[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            declared = list(ast.literal_eval(node.value))
    names = declared if declared is not None else [name for name in imported if not name.startswith("_")]
    return {name: imported.get(name, f"{package}.{name}") for name in names}


def api_directives():
    """Every `::: identifier` of the API reference pages."""
    found = set()
    for page in API_PAGES:
        found.update(re.findall(r"^:::\s*([\w.]+)\s*$", page.read_text(), flags=re.MULTILINE))
    return found


@pytest.mark.core
def test_every_public_name_is_in_the_api_reference():
    assert API_PAGES, "docs/api/ has no pages"
    directives = api_directives()
    names = public_names()
    assert len(names) > 40, sorted(names)  # the parse found the API
    missing = sorted(
        f"tf_sparsity.{name} (from {source})"
        for name, source in names.items()
        if f"tf_sparsity.{name}" not in directives and source not in directives
    )
    for module, files in OPTIONAL_MODULES.items():
        if any((ROOT / f).exists() for f in files) and module not in directives:
            missing.append(module)
    assert not missing, (
        "Public names missing from the API reference; add a `::: NAME` line to "
        "a page of docs/api/ (and the page to mkdocs.yml's nav): " + ", ".join(missing)
    )


@pytest.mark.core
def test_every_public_name_has_a_docstring():
    import tf_sparsity

    pages = "\n".join(page.read_text() for page in API_PAGES)
    undocumented = []
    for name in public_names():
        obj = getattr(tf_sparsity, name)
        if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj):
            if not (obj.__doc__ or "").strip():  # a class's own, not inherited
                undocumented.append(name)
        elif f"`tfs.{name}`" not in pages:
            # A value (such as the `METHODS` dict) has no docstring of its
            # own at run time: its API page must say what it is.
            undocumented.append(name)
    assert not undocumented, f"Public names without a docstring: {undocumented}"


@pytest.mark.core
@pytest.mark.parametrize("module", sorted(OPTIONAL_MODULES))
def test_optional_module_names_are_in_the_api_reference(module):
    if not any((ROOT / f).exists() for f in OPTIONAL_MODULES[module]):
        pytest.skip(f"{module} does not exist")
    names = importlib.import_module(module).__all__
    directives = api_directives()
    missing = sorted(name for name in names if f"{module}.{name}" not in directives)
    assert not missing, f"Names of {module}.__all__ missing from docs/api/: {missing}"


def _docs_extra_missing():
    for name in DOCS_PACKAGES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


@pytest.mark.slow
@pytest.mark.tensorflow
def test_mkdocs_build_strict(tmp_path):
    missing = _docs_extra_missing()
    if missing:
        pytest.skip(f"the docs extra is not installed ({missing} is missing): pip install -e '.[docs]'")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + output[-6000:]
    site = tmp_path / "site"
    assert (site / "index.html").exists()
    # Every notebook is a page, every API page has its entries rendered.
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / notebook.stem / "index.html").exists(), notebook.name
    assert "tf_sparsity.sparsify" in (site / "api" / "sparsify" / "index.html").read_text()
