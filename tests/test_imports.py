"""The package's module-level import graph has no cycle, and its own modules are imported at
module level (lazy imports inside functions are kept for optional dependencies only)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
