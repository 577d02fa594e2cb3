"""The package's module-level import graph has no cycle, and its own modules are imported at
module level (lazy imports inside functions are kept for optional dependencies only)."""

import ast
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

PACKAGE = "keras_fmnist"


def _modules():
    """{dotted module name: path} for every module and package of keras_fmnist."""
    out = {}
    for directory, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(directory, name), ROOT)[:-3]
            dotted = rel.replace(os.sep, ".")
            out[dotted.removesuffix(".__init__")] = os.path.join(directory, name)
    return out


def _imported_names(nodes):
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _module_level(tree):
    """Statements executed on import: module and class bodies, not function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _function_level(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))


def import_graph():
    """{module: modules whose import it triggers}, counting the packages on the way
    (importing `a.b.c` runs `a.b`'s __init__), except the root package and the module's own
    parent packages."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        targets = set()
        for imported in _imported_names(_module_level(tree)):
            parts = imported.split(".")
            for i in range(2, len(parts) + 1):
                prefix = ".".join(parts[:i])
                # A module's own parent packages are initialised before it, by Python.
                ancestor = name.startswith(prefix + ".")
                if prefix in modules and prefix != name and not ancestor:
                    targets.add(prefix)
        graph[name] = targets
    return graph


def find_cycle(graph):
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_module_level_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "keras_fmnist.ops.deform_conv" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_package_imports_its_own_modules_at_module_level():
    lazy = []
    for name, path in _modules().items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in _function_level(tree):
            names = list(_imported_names([node]))
            if any(n == PACKAGE or n.startswith(PACKAGE + ".") for n in names):
                lazy.append(f"{name}:{node.lineno}")
    assert lazy == []


def _backend_after_import(tmp_path, keras_json=None, env_backend=None, code=None):
    home = tmp_path / "keras_home"
    home.mkdir(exist_ok=True)
    if keras_json is not None:
        (home / "keras.json").write_text(json.dumps(keras_json))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(home)
    if env_backend:
        env["KERAS_BACKEND"] = env_backend
    code = code or "import keras_fmnist, keras; print('BACKEND', keras.backend.backend())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


@pytest.mark.cli_orchestration
def test_the_users_backend_wins_and_torch_is_only_the_default(tmp_path):
    def backend(**kwargs):
        result = _backend_after_import(tmp_path, **kwargs)
        assert result.returncode == 0, result.stderr[-2000:]
        return [l for l in result.stdout.splitlines() if l.startswith("BACKEND")][0].split()[1]

    assert backend(keras_json={"backend": "jax"}) == "jax"  # keras.json is the user's
    assert backend(keras_json={"backend": "jax"}, env_backend="tensorflow") == "tensorflow"
    assert backend(keras_json={"floatx": "float32"}) == "torch"  # no backend named
    # What Keras writes on its first import anywhere: not a choice (KERAS_BACKEND is).
    assert backend(keras_json={"backend": "tensorflow"}) == "torch"
    (tmp_path / "keras_home" / "keras.json").unlink()
    assert backend() == "torch"  # nothing chosen


@pytest.mark.cli_orchestration
def test_tensorflow_imported_after_the_package_on_torch_works(tmp_path):
    """The safe order, which run.py takes: torch (through keras_fmnist) first, then
    TensorFlow (the other order crashes inside TensorFlow's own import on the torch backend,
    which loads Keras and so torch's compiler after TensorFlow's libraries)."""
    result = _backend_after_import(tmp_path, env_backend="torch", code=(
        "import keras_fmnist, keras, numpy as np\n"
        "import tensorflow, torchvision\n"
        "m = keras_fmnist.accelerate(keras_fmnist.build_resnet18(stages=1))\n"
        "print('BACKEND', keras.backend.backend(), tuple(m(np.zeros((1, 28, 28, 1))).shape))"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BACKEND torch (1, 10)" in result.stdout
