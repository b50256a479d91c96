"""Writes the tutorial notebooks from their sources in `_src/`.

    python notebooks/_build.py [NAME ...]

Each `_src/NAME.ipy` is a notebook in the "percent" format (IPython
syntax, hence `.ipy`: `!` and `%` lines are not Python): `# %%` starts a
code cell, `# %% [markdown]` a markdown cell (its lines are comments),
`# %% [parameters]` the parameters cell (tagged `parameters`, the cell CI
overrides). A first line `# install: EXTRAS | MODULES` says what the install
cell installs in Colab. This script adds the Colab badge under the title
and the install cell after the first markdown cell. Notebooks are written
without outputs; `tests/test_notebooks.py` fails when a committed notebook
differs from what this script writes, so edit the source and rerun.
"""

import pathlib
import re
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "_src"
COLAB = ("https://colab.research.google.com/github/tf-sparsity/tf_sparsity/"
         "blob/main/notebooks/{name}.ipynb")
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"
REPO = "git+https://github.com/tf-sparsity/tf_sparsity.git"
_MARKER = re.compile(r"^# %%(?: \[(markdown|parameters)\])?\s*$")


def names():
    return sorted(path.stem for path in SOURCES.glob("*.ipy"))


def install_cell(extras, modules):
    """Installs tf_sparsity from GitHub where it is missing (Colab), then
    any of `modules` still missing (by pip name); never replaces an installed
    tf_sparsity (a local checkout, CI)."""
    spec = f"tf_sparsity[{extras}] @ {REPO}" if extras else f"tf_sparsity @ {REPO}"
    lines = [
        "# In Colab: install tf_sparsity from GitHub (a minute or two). Where it is",
        "# already installed (a local checkout, CI) nothing is installed.",
        "import importlib.util",
        "",
        'if importlib.util.find_spec("tf_sparsity") is None:',
        f'    %pip install -q "{spec}"',
    ]
    if modules:
        lines += [
            "# Packages this notebook also needs, where missing:",
            f"missing = [name for name in {tuple(modules)!r} if importlib.util.find_spec(name) is None]",
            "if missing:",
            '    packages = " ".join(name.replace("_", "-") for name in missing)',
            "    %pip install -q {packages}",
        ]
    return "\n".join(lines)


def parse(text):
    """Splits a percent-format source into (install, [(kind, source)])."""
    lines = text.splitlines()
    install = ("", [])
    if lines and lines[0].startswith("# install:"):
        extras, _, modules = lines.pop(0)[len("# install:"):].partition("|")
        install = (extras.strip(), modules.split())
    cells, kind, body = [], None, []

    def flush():
        if kind is not None:
            source = "\n".join(body).strip("\n")
            if kind == "markdown":
                source = "\n".join(re.sub(r"^# ?", "", line) for line in source.splitlines())
            cells.append((kind, source))

    for line in lines:
        match = _MARKER.match(line)
        if match:
            flush()
            kind, body = match.group(1) or "code", []
        elif kind is not None:
            body.append(line)
    flush()
    return install, cells


def build(name):
    install, cells = parse((SOURCES / f"{name}.ipy").read_text(encoding="utf-8"))
    if not cells or cells[0][0] != "markdown" or not cells[0][1].startswith("# "):
        raise ValueError(f"{name}: the first cell must be markdown starting with '# Title'")
    title, _, rest = cells[0][1].partition("\n")
    badge = BADGE.format(url=COLAB.format(name=name))
    cells[0] = ("markdown", f"{title}\n\n{badge}\n{rest}")
    cells.insert(1, ("code", install_cell(*install)))
    notebook = nbformat.v4.new_notebook()
    for index, (kind, source) in enumerate(cells):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{name}-{index:02d}"  # Stable ids: rebuilding changes nothing.
        notebook.cells.append(cell)
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["colab"] = {"provenance": [], "toc_visible": True}
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def main(argv):
    for name in argv or names():
        path = HERE / f"{name}.ipynb"
        path.write_text(build(name), encoding="utf-8")
        print("wrote", path.relative_to(HERE.parent))


if __name__ == "__main__":
    main(sys.argv[1:])
