"""The package's shape: modules import each other without cycles, keep their own
state, and the README's "where / what" table names every one of them."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "flight_secure"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (generated code left out)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_generated" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _not_on_import(node: ast.If) -> bool:
    """Whether the block runs only for type checkers or when its module is run as a
    script: ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":``."""
    test = node.test
    if isinstance(test, ast.Name | ast.Attribute):
        return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere but in blocks that do not run on
    import (TYPE_CHECKING, ``__main__``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _not_on_import(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in known)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``, each as the path that closes it."""
    found, state = [], {}

    def walk(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append([*trail[trail.index(imported):], imported])
            elif imported not in state:
                walk(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return found


def test_the_import_graph_has_no_cycles() -> None:
    found = modules()
    graph = {name: imports_of(path, set(found)) - {name} for name, path in found.items()}
    # A module importing its own package's __init__ is the package loading itself.
    graph = {name: {m for m in imported if not name.startswith(m + ".")}
             for name, imported in graph.items()}
    assert cycles(graph) == []


def _own_names(tree: ast.Module) -> set[str]:
    """The underscore names a module defines: its functions, classes, module and class
    variables, slots and the attributes it assigns on ``self``/``cls``."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            own.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            own.add(node.value)  # __slots__ entries
    return own


#: Standard-library functions whose documented name starts with an underscore.
DOCUMENTED_UNDERSCORE_NAMES = frozenset({"os._exit"})


def underscore_reads(path: Path) -> set[tuple[str, str]]:
    """(module, name) for each underscore name ``path`` uses but another module owns."""
    tree = ast.parse(path.read_text())
    own = _own_names(tree)
    where = path.relative_to(PACKAGE).as_posix()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flight_secure"):
            found.update((where, f"{node.module}.{alias.name}") for alias in node.names
                         if alias.name.startswith("_") and not alias.name.startswith("__")
                         and node.module != "flight_secure._generated")
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__") and node.attr not in own
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
              and f"{ast.unparse(node.value)}.{node.attr}" not in DOCUMENTED_UNDERSCORE_NAMES):
            found.add((where, f"{ast.unparse(node.value)}.{node.attr}"))
    return found


def test_no_module_reads_another_modules_underscore_names() -> None:
    reads = set().union(*(underscore_reads(path) for path in modules().values()))
    assert reads == set()


def test_the_readme_table_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| where | what |"):]
    table = table[:table.index("\n\n")]

    def named(path: Path) -> bool:
        """The table names the module's file, or the whole subpackage it belongs to."""
        in_subpackage = path.parent != PACKAGE
        return path.name in table or (in_subpackage and f"`{path.parent.name}/`" in table)

    missing = [path.relative_to(PACKAGE).as_posix() for path in modules().values()
               if path.name != "__init__.py" and not named(path)]
    assert missing == []
