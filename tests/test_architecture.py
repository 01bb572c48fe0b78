"""The package's layers (docs/architecture.md): every import, at module level or inside a function, points down.

Each module's imports are read with ``ast`` (nothing is imported), so an import hidden in a function body counts
as much as one at the top of the file.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "diffsynth_dualcam"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
#: Lowest layer first; a module may import from its own group and from groups of lower layers only. The root
#: modules (``io``, ``limits``) are groups of their own.
LAYERS: list[tuple[str, ...]] = [
    ("io", "limits"),
    ("camera",),
    ("models", "export"),
    ("pipeline", "data"),
    ("world", "parallel", "train", "eval"),
    ("app",),
    ("cli",),
]
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}


def module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules ``name`` imports anywhere in its file (absolute dotted names; ``from pkg import module`` gives the
    module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known)
    return found


def group_of(name: str) -> str | None:
    """The layer group of a package module (``diffsynth_dualcam.pipeline.units`` -> ``pipeline``); None for the
    package itself and for entry points (``__main__``), which are run, never imported, and may use any layer."""
    parts = name.split(".")
    if len(parts) == 1 or parts[-1] == "__main__":
        return None
    return parts[1]


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    """Importing module -> imported package modules."""
    names = module_names()
    known = set(names)
    return {name: {target for target in imports_of(name, path, known) if target.split(".")[0] == PACKAGE}
            for name, path in names.items()}


def test_the_reader_sees_function_level_and_relative_imports(edges):
    # cli.generate imports the world package inside a function, relative to itself: a reader that missed either
    # would let an upward import through unseen.
    assert f"{PACKAGE}.world.long" in edges[f"{PACKAGE}.cli.generate"]
    assert f"{PACKAGE}.pipeline.tiny" in edges[f"{PACKAGE}.pipeline.setup"]


def test_every_group_has_a_layer():
    groups = {group_of(name) for name in module_names()} - {None}
    assert groups - set(RANK) == set(), "add the new group to LAYERS here and to docs/architecture.md"


def test_imports_point_down_the_layers(edges):
    upward = sorted(
        f"{source} -> {target}" for source, targets in edges.items() for target in targets
        if group_of(source) in RANK and group_of(target) in RANK and group_of(source) != group_of(target)
        and RANK[group_of(target)] >= RANK[group_of(source)]  # groups without a layer fail the test above
    )
    assert upward == []


def test_no_import_cycle_between_groups(edges):
    graph: dict[str, set[str]] = {}
    for source, targets in edges.items():
        for target in targets:
            if None not in (group_of(source), group_of(target)) and group_of(source) != group_of(target):
                graph.setdefault(group_of(source), set()).add(group_of(target))

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for following in graph.get(stack.pop(), ()):
                if following not in seen:
                    seen.add(following)
                    stack.append(following)
        return seen

    assert sorted(group for group in graph if group in reachable(group)) == []


def test_production_code_imports_no_tests_and_no_testing_module():
    offenders = []
    for name, path in module_names().items():
        for target in imports_of(name, path, set()):
            parts = target.split(".")
            if parts[0] == "tests" or "testing" in parts:
                offenders.append(f"{name} -> {target}")
    assert offenders == []
