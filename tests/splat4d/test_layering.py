"""Dependencies point one way: cuda_rasterizer <- splat4d <- {pipelines, viewer}; only splat4d/cli.py wires them."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Which top-level packages each package may import.
ALLOWED = {
    "cuda_rasterizer": {"cuda_rasterizer"},
    "splat4d": {"splat4d", "cuda_rasterizer"},
    "pipelines": {"pipelines", "splat4d", "cuda_rasterizer"},
    "viewer": {"viewer", "splat4d", "cuda_rasterizer"},
}
COMPOSITION_ROOT = REPO / "splat4d" / "cli.py"
PROJECT_PACKAGES = set(ALLOWED)


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT_PACKAGES


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT_PACKAGES


def _python_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_layers_to_its_left(package: str) -> None:
    violations = []
    for path in _python_files(package):
        if path == COMPOSITION_ROOT:
            continue
        bad = _imported_packages(path) - ALLOWED[package]
        if bad:
            violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert not violations, "layering violated:\n" + "\n".join(violations)


def test_cli_imports_pipelines_and_viewer_only_inside_functions() -> None:
    assert not _module_level_imports(COMPOSITION_ROOT) & {"pipelines", "viewer"}


def test_layering_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom viewer.server import Viewer\n")
    assert _imported_packages(bad) == {"viewer"}
