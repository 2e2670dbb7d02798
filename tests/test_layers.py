"""Every import points down the layers, and no module imports itself back.

    entry points (backend.app, backend.asgi, backend.__main__, workers)
    → http → services → knowledge / search / streams / storage
    → providers / models / schemas and the shared foundations (errors, settings, ...)

Walked from the source with `ast`, so imports inside functions and under
`TYPE_CHECKING` count too: a type two layers share lives in the lower one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backend", "workers", "schemas")

# Longest prefix wins; a higher number is a higher layer.
LAYERS: dict[str, int] = {
    "backend.app": 5,
    "backend.asgi": 5,
    "backend.web_server": 5,
    "backend.__main__": 5,
    "workers": 5,
    "backend.http": 4,
    "backend.services": 3,
    "backend.knowledge": 2,
    "backend.search": 2,
    "backend.streams": 2,
    "backend.storage": 2,
    "backend.providers": 1,
    "backend.models": 1,
    "backend.migrations": 1,
    "schemas": 1,
    "backend.errors": 1,
    "backend.settings": 1,
    "backend.constants": 1,
    "backend.connections": 1,
    "backend.database": 1,
    "backend.job_queue": 1,
    "backend.observability": 1,
    "backend": 1,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def layer_of(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def imported(path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """(line, module) for each project module `path` imports; `from package import name`
    counts as importing the submodule when `name` is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield node.lineno, submodule if submodule in known else node.module


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for _, target in imported(path, known) if target != name}
        for name, path in known.items()
    }


def test_every_import_points_to_the_same_or_a_lower_layer() -> None:
    known = modules()
    upward = []
    for name, path in sorted(known.items()):
        for line, target in imported(path, known):
            if layer_of(target) > layer_of(name):
                upward.append(f"{path.relative_to(ROOT)}:{line} {name} imports {target}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_walk_sees_imports_in_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    """The checker itself: a hidden upward import is found, not only top-level ones."""
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from backend.http.auth import current_user\n"
        "def later():\n"
        "    from backend.services import tasks\n"
        "    import backend.streams.hub\n",
        encoding="utf-8",
    )
    known = modules()
    found = {target for _, target in imported(source, known)}
    assert found == {"backend.http.auth", "backend.services.tasks", "backend.streams.hub"}
    assert layer_of("backend.http.auth") > layer_of("backend.streams.hub")
