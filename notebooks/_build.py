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


def version():
    """tf_sparsity's version, as `tf_sparsity/__init__.py` (and so setup.cfg) says."""
    text = (HERE.parent / "tf_sparsity" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


_INSTALL = """\
# Installs tf_sparsity {version}, the version this notebook is written for, where
# it is missing or older (Colab: a minute or two); a local checkout is left as
# it is. pip may not replace the runtime's TensorFlow (Colab's is built for its
# GPU), nor bring a tensorflow-text made for another TensorFlow release.
import importlib.metadata, importlib.util, os, sys, tempfile
from packaging.version import Version


def installed(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


PACKAGES = {packages}   # pip name: module name
before = {{name: installed(name) for name in PACKAGES}}
constraints = os.path.join(tempfile.gettempdir(), "tf_sparsity_constraints.txt")
with open(constraints, "w") as f:
    if before["tensorflow"]:
        release = ".".join(before["tensorflow"].split(".")[:2])
        f.write(f"tensorflow=={{before['tensorflow']}}\\ntensorflow-text=={{release}}.*\\n")
if before["tf_sparsity"] is None or Version(before["tf_sparsity"]) < Version("{version}"):
    %pip install -q --upgrade -c {{constraints}} "{spec}"
{modules}after = {{name: installed(name) for name in PACKAGES}}
print(", ".join(f"{{name}} {{after[name]}}" for name in PACKAGES))
assert after["tf_sparsity"] and Version(after["tf_sparsity"]) >= Version("{version}"), "see pip's message above"
replaced = [name for name in PACKAGES if after[name] != before[name] and PACKAGES[name] in sys.modules]
if replaced:
    print(f"pip replaced {{', '.join(replaced)}}, already imported in this session: restart "
          "it (Colab: Runtime > Restart session) and run the notebook again from the top.")"""

_INSTALL_MODULES = """\
missing = " ".join(name for name in {names!r} if importlib.util.find_spec(PACKAGES[name]) is None)
if missing:   # other packages this notebook needs
    %pip install -q -c {{constraints}} {{missing}}
"""


def install_cell(extras, modules):
    """Installs tf_sparsity at the tag of this version (`vX.Y.Z`) where it
    is missing or older (Colab), then any of `modules` still missing, with
    the runtime's TensorFlow held fixed (and tensorflow-text bounded to its
    release) so that no dependency replaces it; prints the versions and says
    when the session must be restarted. Where this version is installed (a
    local checkout, CI) it installs nothing."""
    want = version()
    spec = f"tf_sparsity[{extras}] @ {REPO}@v{want}" if extras else f"tf_sparsity @ {REPO}@v{want}"
    names = tuple(module.replace("_", "-") for module in modules)
    pairs = [("tf_sparsity", "tf_sparsity"), ("tensorflow", "tensorflow"), ("keras", "keras")]
    packages = "{" + ", ".join(f'"{n}": "{m}"' for n, m in pairs + list(zip(names, modules))) + "}"
    more = _INSTALL_MODULES.format(names=names) if modules else ""
    return _INSTALL.format(version=want, spec=spec, packages=packages, modules=more)


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
