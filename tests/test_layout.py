"""The package layout's rules, read from the source (no imports run): a folder per concept, the families apart,
no import circles, no private names across modules, and no library module that imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "arcsub"
# which top-level folders each folder may import from (besides itself)
ALLOWED = {
    "core": set(),
    "training": {"core"},
    "solver": {"core"},
    "lm": {"core", "training", "solver"},
    "taskmodel": {"core", "training", "solver"},
    "kaggle": {"core", "lm", "taskmodel", "training", "solver"},
    "cli": {"core", "lm", "taskmodel", "training", "kaggle", "solver"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every `import` / `from ... import` of arcsub, at any depth of the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("arcsub"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("arcsub")]
    return out


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_module_lives_in_a_concept_folder():
    loose = [m for m in MODULES if m != "arcsub" and folder(m) is None]
    assert not loose, f"modules outside the concept folders: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layering(module):
    here = folder(module)
    for target, _ in imports(MODULES[module]):
        there = folder(target)
        if here is None or there is None or there == here:
            continue
        assert there in ALLOWED[here], f"{module} imports {target}: {here}/ may not import {there}/"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_is_imported_from_another_module(module):
    for target, names in imports(MODULES[module]):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private or target == module, f"{module} imports private {private} from {target}"


def test_there_is_no_import_circle():
    """Module-level imports only (function-local ones run late and cannot deadlock at import time)."""
    graph: dict[str, set[str]] = {}
    for m, path in MODULES.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("arcsub"):
                deps.add(node.module if node.module in MODULES else node.module.rpartition(".")[0])
        graph[m] = {d for d in deps if d in MODULES and d != m}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(d) :], d]))
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
