"""Data flows downward: a package never imports from a package above it (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "moorage"

# package -> the moorage packages it may import (besides itself). Mirrors DESIGN.md.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "oci": {"errors"},
    "sys": {"errors"},
    "runtime": {"errors", "oci", "sys"},
    "store": {"errors", "oci", "sys"},
    "registry": {"errors", "oci", "store", "sys"},
    # build reaches into the engine only for its network (RUN steps need the bridge).
    "build": {"errors", "oci", "store", "runtime", "registry", "engine.network", "sys"},
    "engine": {"errors", "oci", "sys", "runtime", "store", "registry", "build"},
    "api": {"errors", "oci", "engine", "sys", "runtime", "store", "registry", "build"},
    "compose": {"errors", "oci", "api"},
    # cli reaches the registry server only to run it: `moor registry serve` is a process
    # entry point, like `moor daemon` (and `gc` works on its storage offline).
    "cli": {"errors", "oci", "api", "compose", "runtime", "registry.server"},
    "cluster": {"errors", "oci", "sys", "runtime", "store", "registry", "engine"},
}


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _moorage_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "moorage" and len(parts) > 1:
                    found.append((node.lineno, ".".join(parts[1:])))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "moorage":
                continue
            if len(parts) > 1:
                found.append((node.lineno, ".".join(parts[1:])))
            else:
                found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def _violations() -> list[str]:
    problems: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == SRC and path.name == "__init__.py":
            continue
        package = _package_of(path)
        allowed = ALLOWED.get(package)
        if allowed is None:
            problems.append(f"{path}: package {package!r} is not in the layering map")
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for lineno, target in _moorage_imports(tree):
            top = target.split(".")[0]
            if top not in (package, "__version__") and not _allowed(target, allowed):
                problems.append(f"{path}:{lineno}: {package} may not import moorage.{target}")
    return problems


def test_no_package_imports_from_a_layer_above() -> None:
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    tree = ast.parse("from moorage.engine import containers\nimport moorage.cli.main\n")
    assert _moorage_imports(tree) == [(1, "engine"), (2, "cli.main")]
    assert not _allowed("engine.containers", ALLOWED["build"])
    assert _allowed("engine.network.bridge", ALLOWED["build"])
    assert _allowed("registry.server.app", ALLOWED["cli"])
    assert "engine" not in ALLOWED["runtime"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layering_map_never_allows_a_cycle(package: str) -> None:
    for other in ALLOWED[package]:
        if other in ALLOWED:  # a narrow "engine.network" grant is not a cycle
            assert package not in ALLOWED[other], f"{package} <-> {other}"
