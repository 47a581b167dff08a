"""No import cycle inside `mergescope/`: every import statement (module level, in functions, under
TYPE_CHECKING) is an edge, so a cycle hidden behind a lazy import fails here too.

Registry targets ("module:factory" strings imported by name) are not import statements and are not walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mergescope"


def module_name(path: Path, package: Path) -> str:
    """The dotted name of a source file under `package` ('mergescope.scoring' for scoring/__init__.py)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of `modules` that the file at `path` (module `name`) imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(part for part in (anchor, node.module) if part)
            # `from pkg import sub` imports the submodule; `from pkg import name` imports pkg itself
            found.update(
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
            )
    return {module for module in found if module in modules and module != name}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports."""
    files = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    return {name: imported_modules(path, name, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None when it has none (depth-first, three colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    (tmp_path / "mergescope" / "inner").mkdir(parents=True)
    (tmp_path / "mergescope" / "__init__.py").write_text("")
    (tmp_path / "mergescope" / "inner" / "__init__.py").write_text("")
    (tmp_path / "mergescope" / "inner" / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "mergescope" / "inner" / "b.py").write_text("from mergescope.inner.a import f\n")
    assert find_cycle(import_graph(tmp_path / "mergescope")) == [
        "mergescope.inner.a",
        "mergescope.inner.b",
        "mergescope.inner.a",
    ]


def test_mergescope_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
