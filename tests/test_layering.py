"""The layering of the project: the experiments (`tf_sparsity_models`, in
`models/`) use the library (`tf_sparsity`), never the reverse; `import
tf_sparsity` is the same module however Python was started; and no module
imports itself through a cycle."""

import ast
import json
import pathlib

import pytest

import tf_sparsity as tfs
from tf_sparsity_models.common import methods as methods_lib
from tests import forked

pytestmark = pytest.mark.core

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Top-level package -> its folder.
PACKAGES = {"tf_sparsity": ROOT / "tf_sparsity", "tf_sparsity_models": ROOT / "models"}


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Overrides conftest's Keras reset: these tests build no models.
    yield


def module_files():
    """`{module name: file}` of every module of both packages."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports(module, path):
    """`[(candidates, line)]`, one per name that an `import` or `from ...
    import` statement anywhere in the file (function bodies included)
    imports: `import a.b` gives `["a.b"]`; `from a import b` gives
    `["a.b", "a"]` (the module `a.b`, or else a name of module `a`)."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend(([alias.name], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # Relative: from the module's own package up.
                package = module.split(".")[: None if is_package else -1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            found.extend(([f"{base}.{alias.name}", base], node.lineno) for alias in node.names)
    return found


def import_graph():
    """`{module: {imported project module: line}}` over both packages."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        edges = {}
        for candidates, line in imports(module, path):
            target = next((name for name in candidates if name in modules), None)
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def find_cycle(graph):
    """A list of modules `[a, b, ..., a]` forming an import cycle, or None."""
    state = {}  # module -> "active" while on the path, "done" after.
    path = []

    def visit(module):
        state[module] = "active"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "active":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_library_never_imports_the_experiments():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for module, path in module_files().items()
        if module.split(".")[0] == "tf_sparsity"
        for candidates, line in imports(module, path)
        for name in candidates[-1:]
        if name.split(".")[0] == "tf_sparsity_models"
    ]
    assert offenders == []


def test_no_import_cycles():
    graph = import_graph()
    assert "tf_sparsity_models.transformer.vocab" in graph["tf_sparsity_models.transformer.data"]
    cycle = find_cycle(graph)
    # "a:12 -> b:30 -> a": module a imports b on its line 12, ...
    assert cycle is None, "import cycle: " + " -> ".join(
        [f"{module}:{graph[module][target]}" for module, target in zip(cycle, cycle[1:])]
        + [cycle[-1]]
    )


def test_find_cycle_reports_one():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    del graph["c"]["a"]
    assert find_cycle(graph) is None


def test_function_level_imports_are_edges(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "import os\n"
        "def f():\n"
        "    from tf_sparsity_models.common import runner\n"
        "    from . import task\n"
    )
    names = {candidates[0] for candidates, _ in imports("tf_sparsity_models.common.cli", path)}
    assert names == {"os", "tf_sparsity_models.common.runner", "tf_sparsity_models.common.task"}


# `import tf_sparsity` does not depend on how Python was started.
_PUBLIC_NAMES = (
    "import json, sys\n"
    "sys.argv = {argv!r}\n"
    "sys.orig_argv = {orig_argv!r}\n"
    "import tf_sparsity\n"
    "print(json.dumps(sorted(n for n in dir(tf_sparsity) if not n.startswith('_'))))\n"
)


_STARTS = [
    (["tf-sparsity", "report", "runs"], ["tf-sparsity", "report", "runs"]),
    (["tf-sparsity", "sweep", "spec.json"], ["tf-sparsity", "sweep", "spec.json"]),
    (["-m", "report"], ["python", "-m", "tf_sparsity_models.cli", "report", "runs"]),
    (["my_script.py", "report"], ["python", "my_script.py", "report"]),
]
_PLAIN_START = (["python"], ["python"])


@pytest.fixture(scope="module")
def fresh_imports():
    """`{orig_argv joined: result}` of importing `tf_sparsity` first after
    each start (one forked child each, see `tests/forked.py`)."""
    starts = [_PLAIN_START] + _STARTS
    results = forked.run_forked(
        [_PUBLIC_NAMES.format(argv=argv, orig_argv=orig_argv) for argv, orig_argv in starts],
        cwd=str(ROOT),
    )
    return {" ".join(orig_argv): result for (_, orig_argv), result in zip(starts, results)}


def _public_names(result):
    assert result["code"] == 0, result["output"][-3000:]
    return json.loads(result["output"].strip().splitlines()[-1])


@pytest.mark.parametrize("argv, orig_argv", _STARTS)
def test_import_gives_the_same_public_names(argv, orig_argv, fresh_imports):
    plain = _public_names(fresh_imports[" ".join(_PLAIN_START[1])])
    assert _public_names(fresh_imports[" ".join(orig_argv)]) == plain
    assert {"sparsify", "METHODS", "SparseWrapper", "strip", "SparsityCallback"} <= set(plain)


def test_method_names_without_importing_the_library():
    assert set(methods_lib.names()) == set(tfs.METHODS)
    assert list(methods_lib.names()) == sorted(tfs.METHODS)
