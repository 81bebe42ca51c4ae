"""The layers point one way: pipeline/ and hardware/ import neither models/ nor deploy/, and models/ never imports
deploy/ (deploy passes its predictors into models' evaluation). Every import counts, function-local ones too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"models": ("deploy",), "pipeline": ("models", "deploy"), "hardware": ("models", "deploy")}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, at any depth (relative imports are not used)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    """file:line module for each import from `package` of a package it must not use."""
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path.read_text(encoding="utf-8")):
            if module.split(".")[0] in FORBIDDEN[package]:
                out.append(f"{path.relative_to(ROOT)}:{line} {module}")
    return out


def test_the_scan_sees_function_local_and_from_imports():
    source = "import os\n\ndef f():\n    from deploy.tflite import LiteRTRunner\n    import deploy.export as e\n"
    assert imported_modules(source) == [(1, "os"), (4, "deploy.tflite"), (5, "deploy.export")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_lower_layer_never_imports_a_higher_one(package):
    assert violations(package) == []


def unresolved_names(paths: list[Path]) -> list[str]:
    """file:line module.name for each name imported from a project module (at any depth) that it does not have."""
    import importlib

    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] in PROJECT_PACKAGES):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
                if not hasattr(module, alias.name) and not submodule:
                    out.append(f"{path.name}:{node.lineno} {node.module}.{alias.name}")
    return out


PROJECT_PACKAGES = ("models", "deploy", "pipeline", "hardware", "labs", "benchmarks")


def test_every_project_import_names_something_that_exists():
    """Function-local imports run only when their code does: a name moved or renamed elsewhere must fail here."""
    pytest.importorskip("tensorflow")
    paths = [p for package in (*PROJECT_PACKAGES, "tests") for p in sorted((ROOT / package).rglob("*.py"))]
    assert unresolved_names(paths + [ROOT / "tasks.py"]) == []


def test_the_name_check_finds_a_moved_name(tmp_path):
    moved = tmp_path / "old_caller.py"
    moved.write_text("def f():\n    from pipeline.plotting import new_figure, no_such_helper\n")
    assert unresolved_names([moved]) == ["old_caller.py:2 pipeline.plotting.no_such_helper"]
