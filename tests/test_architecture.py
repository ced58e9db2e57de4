"""The architecture as tests: which package may import which, no import cycle, and small modules and functions.

The import graph is read from the source: every ``import``, at module level, inside a function or under
``if TYPE_CHECKING:``, so a cycle hidden inside a function or behind a type-only import counts as much as one at
the top (a type-only loop is still two modules that cannot be understood apart).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "training", "app")
CHECKED = (*PACKAGES, "benchmarks", "scripts", "tests")
WEB = ("fastapi", "starlette", "uvicorn", "grpc")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 40

# (importer prefix, forbidden prefixes): each rule is a direction the layers must not take.
EDGES = ("app.http", "app.v2", "app.front")  # what speaks to clients; they know the engine by its seam only
NEUTRAL = ("app.config", "app.capacity", "app.errors", "app.metrics")  # plain modules everyone may import
UPPER = ("app.engine", "app.front", "app.http", "app.v2", "app.process", "app.__main__")
RULES = [
    ("model", ("app", "training")),
    ("training", ("app",)),
    ("app", ("training",)),
    # The engine knows no protocol and no web framework; the edges and the process know the engine.
    ("app.engine", ("app.http", "app.v2", "app.front", "app.process", "app.__main__", *WEB)),
    # The two HTTP edges share what they need through app.front, never through each other.
    ("app.http", ("app.v2", "app.process", "app.__main__")),
    ("app.v2", ("app.http", "app.process", "app.__main__")),
    ("app.front", ("app.http", "app.v2", "app.process", "app.__main__")),
    *((neutral, UPPER) for neutral in NEUTRAL),
]
SEAM = "app.engine.client"  # the one engine module the edges may import (plain data, no torch)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(*packages: str) -> Iterator[Path]:
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            if "_pb2" not in path.name:  # generated protocol code
                yield path


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, resolved to absolute names; ``TYPE_CHECKING`` blocks included."""
    tree = ast.parse(path.read_text())
    name = module_name(path) if path.is_relative_to(REPO) else path.stem
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = {module_name(p): p for p in source_files(*PACKAGES)}
    return {name: {m for m in imported_modules(path) if m in files and m != name} for name, path in files.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "forbidden"), RULES, ids=[rule[0] for rule in RULES])
def test_layers_import_only_downwards(importer: str, forbidden: tuple[str, ...]) -> None:
    broken = [
        f"{module_name(path)} imports {target}"
        for path in source_files(*PACKAGES)
        if within(module_name(path), importer)
        for target in sorted(imported_modules(path))
        if any(within(target, prefix) for prefix in forbidden)
    ]
    assert not broken, "\n".join(broken)


def test_the_edges_know_the_engine_by_its_client_seam_only() -> None:
    broken = [
        f"{module_name(path)} imports {target}"
        for path in source_files("app")
        if any(within(module_name(path), edge) for edge in EDGES)
        for target in sorted(imported_modules(path))
        if within(target, "app.engine") and not within(target, SEAM) and target != "app.engine"
    ]
    assert not broken, "\n".join(broken)


def test_the_checker_sees_type_only_imports(tmp_path: Path) -> None:
    module = tmp_path / "typed.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.engine.host import ModelHost\n"
    )
    assert "app.engine.host" in imported_modules(module)


def test_the_project_has_no_import_cycle() -> None:
    graph = project_graph()
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_a_cycle_inside_a_function(tmp_path: Path) -> None:
    """The import reader must not miss the kind of cycle this project once had: one hidden in a function."""
    module = tmp_path / "worker.py"
    module.write_text("def run():\n    from app.__main__ import serve\n    serve()\n")
    assert "app.__main__" in imported_modules(module)


def test_modules_and_functions_stay_small() -> None:
    too_big = []
    for path in source_files(*CHECKED):
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(REPO)}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    too_big.append(f"{where} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not too_big, "\n".join(too_big)
