"""The package's shape: no import circle, the exporter and callbacks independent of YOLOModule, small files."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from yolo_lightning.hyperparameters import MODULE_PARAMETERS
from yolo_lightning.module import YOLOModule

PACKAGE = Path(__file__).resolve().parent.parent / "yolo_lightning"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main(test: ast.expr) -> bool:
    """``__name__ == "__main__"``: code that runs only as a script (``python -m``), in a process of its own."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _import_nodes(tree: ast.AST, type_checking: bool = False):
    """(import node, inside an ``if TYPE_CHECKING:`` block) for every import, at any depth (functions included), but
    not those of a script's ``if __name__ == "__main__":`` block."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_main(node.test):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]), type_checking)
        else:
            yield from _import_nodes(node, type_checking)


def _known(name: str) -> str | None:
    """The package module ``name`` is, or lies in (``yolo_lightning.a.B`` -> ``yolo_lightning.a``); None if outside."""
    while name and name not in SOURCES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> list[tuple[str, list[str]]]:
    """(imported package module, names taken from it) for one import statement."""
    if isinstance(node, ast.Import):
        return [(target, [alias.name]) for alias in node.names if (target := _known(alias.name))]
    base = node.module or ""
    if node.level:  # relative: from the importer's package (a package's __init__ is its own package)
        package = importer if SOURCES[importer].name == "__init__.py" else importer.rpartition(".")[0]
        package = ".".join(package.split(".")[: len(package.split(".")) - (node.level - 1)])
        base = f"{package}.{base}" if base else package
    targets = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"  # ``from pkg import submodule`` imports the submodule
        target = submodule if submodule in SOURCES else _known(base)
        if target:
            targets.append((target, [alias.name]))
    return targets


def _is_yolo_module(name: str) -> bool:
    """``yolo_lightning.module``, where YOLOModule lives (or a module of it, should it become a package)."""
    return name == "yolo_lightning.module" or name.startswith("yolo_lightning.module.")


def _counts_when_type_checking(target: str, names: list[str]) -> bool:
    """Typing-only imports count when they name YOLOModule: a callback or collaborator states what it uses instead."""
    return "YOLOModule" in names or _is_yolo_module(target)


def import_graph() -> dict[str, set[str]]:
    """Package module -> the package modules it imports (a package's ``__init__`` re-exporting counts as the
    package's edge). Parent packages that Python runs implicitly are not edges; typing-only imports are, if they need
    YOLOModule."""
    graph: dict[str, set[str]] = {}
    for name, path in SOURCES.items():
        edges = graph.setdefault(name, set())
        for node, type_checking in _import_nodes(ast.parse(path.read_text(), str(path))):
            for target, names in _targets(node, name):
                if target != name and (not type_checking or _counts_when_type_checking(target, names)):
                    edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "yolo_lightning.module" in graph and graph["yolo_lightning.module"], "the graph misses the module's imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_exporter_and_the_callbacks_do_not_need_yolo_module():
    graph = import_graph()
    independent = ["yolo_lightning.export", "yolo_lightning.checkpoint_export"]
    independent += [name for name in graph if name.startswith("yolo_lightning.callbacks")]
    needing = {}
    for name in independent:
        if needed := sorted(m for m in _reachable(graph, name) if _is_yolo_module(m)):
            needing[name] = needed
    assert not needing, f"these import YOLOModule's module (directly or through others): {needing}"


@pytest.mark.parametrize(
    ("source", "cycle"),
    [
        ("from yolo_lightning.b import x\n", ["yolo_lightning.a", "yolo_lightning.b", "yolo_lightning.a"]),
        ("def f():\n    from yolo_lightning import b\n", ["yolo_lightning.a", "yolo_lightning.b", "yolo_lightning.a"]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from yolo_lightning.b import x\n", None),
        ("if __name__ == '__main__':\n    import yolo_lightning.b\n", None),
    ],
)
def test_the_circle_check_sees_function_imports_not_typing_or_script_ones(source, cycle, monkeypatch):
    for name in ("yolo_lightning.a", "yolo_lightning.b"):
        monkeypatch.setitem(SOURCES, name, Path(f"{name.rpartition('.')[2]}.py"))
    edges = set()
    for node, type_checking in _import_nodes(ast.parse(source)):
        targets = _targets(node, "yolo_lightning.a")
        edges |= {t for t, names in targets if not type_checking or _counts_when_type_checking(t, names)}
    assert find_cycle({"yolo_lightning.a": edges, "yolo_lightning.b": {"yolo_lightning.a"}}) == cycle


def test_module_parameters_list_every_yolo_module_argument():
    """check_known_hyperparameters reads MODULE_PARAMETERS: it must name exactly what YOLOModule takes."""
    parameters = set(inspect.signature(YOLOModule.__init__).parameters) - {"self", "unknown"}
    assert MODULE_PARAMETERS == parameters, (
        f"missing from MODULE_PARAMETERS: {sorted(parameters - MODULE_PARAMETERS)}, "
        f"not YOLOModule's: {sorted(MODULE_PARAMETERS - parameters)}"
    )


def test_no_source_file_is_longer_than_500_lines():
    lines = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in SOURCES.values()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
