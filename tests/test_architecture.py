"""The layer rule of docs/architecture.md, enforced: each layer imports only the layers below it.

Every ``import adm.x`` / ``from adm.x import`` in ``src/adm`` counts, also those inside
functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "adm"

LIBRARY = {"core", "models", "diffusion", "data", "spec", "presets", "hub", "sampling", "evaluation", "training"}
ALLOWED = {  # layer -> the layers it may import (docs/architecture.md has the same table)
    "core": set(),
    "models": {"core"},
    "diffusion": {"core"},
    "data": {"core"},
    "spec": {"core", "models", "diffusion"},
    "presets": {"core", "spec"},
    "hub": {"core", "spec", "presets"},
    "sampling": {"core", "models", "diffusion", "data"},
    "evaluation": {"core", "data", "hub"},
    "training": {"core", "models", "diffusion", "data", "spec", "presets", "hub", "_version"},
    "api": LIBRARY,
    "compat": {"core", "models", "diffusion", "spec", "hub", "sampling"},
    "recipes": {"core", "data", "presets", "hub", "evaluation", "training", "api"},
    "cli": {"core", "api", "recipes", "_version"},
    "__init__": {"_version"},
    "__main__": {"cli"},
    "_version": set(),
    "assets": set(),  # package data (the shipped digits weights)
}


def layer_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imported_layers(path: Path) -> dict[str, int]:
    """adm layers imported by a module → the first line that imports each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + ([f"adm.{a.name}" for a in node.names] if node.module == "adm" else [])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "adm" and len(parts) > 1:
                found.setdefault(parts[1], node.lineno)
    return found


MODULES = sorted(SRC.rglob("*.py"))


def test_every_layer_is_in_the_table():
    assert {layer_of(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_a_module_imports_only_layers_below_its_own(path):
    layer = layer_of(path)
    wrong = {other: line for other, line in imported_layers(path).items() if other != layer and other not in ALLOWED[layer]}
    assert not wrong, f"{path.relative_to(SRC)} ({layer}) imports " + ", ".join(f"adm.{o} (line {n})" for o, n in wrong.items())


def test_the_rule_has_no_cycles():
    seen: dict[str, str] = {}

    def visit(layer: str, stack: tuple[str, ...]) -> None:
        assert layer not in stack, " -> ".join((*stack, layer))
        if seen.get(layer) == "done":
            return
        for below in ALLOWED[layer]:
            visit(below, (*stack, layer))
        seen[layer] = "done"

    for layer in ALLOWED:
        visit(layer, ())


def test_the_top_level_names_come_from_the_api_or_core():
    import adm

    targets = set(adm._EXPORTS.values())
    assert all(t.startswith(("adm.api.", "adm.core.")) for t in targets), targets
    for name in adm.__all__:
        assert getattr(adm, name) is not None


def test_the_checker_sees_a_lazy_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from adm.cli.main import app\n    import adm.training.runs\n")
    assert imported_layers(module) == {"cli": 2, "training": 3}


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The adm modules ``path`` imports, lazily or for type checking only as well: each is a dependency
    of what the module means."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def test_no_module_imports_itself_through_others():
    """Module by module, not only layer by layer: no import circle (registry <-> builtin was one)."""
    def name(path: Path) -> str:
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    paths = {name(p): p for p in MODULES}
    graph = {m: _module_imports(p, set(paths)) - {m} for m, p in paths.items()}
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, "import circle: " + " -> ".join((*stack[stack.index(module):], module))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, (*stack, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
