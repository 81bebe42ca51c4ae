"""One installable package: pyproject.toml's [project] declares every top-level package of the checkout (each folder
with an __init__.py, tests/ aside) with all its sub-packages, its dependencies are requirements.txt, and
`pip install -e .` (offline, no build isolation) makes `import models, deploy, pipeline` work from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT

NOT_INSTALLED = {"tests"}  # the test suite runs from the checkout; a generic top-level name is not installed


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def package_folders() -> set[str]:
    """Every package of the checkout, dotted, found by its __init__.py (build/ and hidden folders not entered)."""
    found = set()
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and not (folder == str(REPO_ROOT) and
                                                                               d == "build")]
        if "__init__.py" in files and Path(folder) != REPO_ROOT:
            found.add(".".join(Path(folder).relative_to(REPO_ROOT).parts))
    return found


def test_the_declared_packages_are_every_top_level_package_folder():
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    declared = {pattern.rstrip("*") for pattern in include}
    top_level = {name.split(".")[0] for name in package_folders()}
    assert declared == top_level - NOT_INSTALLED
    assert top_level >= NOT_INSTALLED


def test_setuptools_finds_every_sub_package_and_nothing_else():
    from setuptools import find_packages

    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    found = set(find_packages(where=str(REPO_ROOT / find["where"][0]), include=find["include"]))
    assert found == {name for name in package_folders() if name.split(".")[0] not in NOT_INSTALLED}


def test_the_project_table_reads_its_dependencies_from_requirements_txt():
    project = pyproject()["project"]
    assert project["name"] == "face-k210" and project["requires-python"] == ">=3.11"
    assert project["dynamic"] == ["dependencies"] and "dependencies" not in project
    assert pyproject()["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert (REPO_ROOT / "requirements.txt").is_file()


@pytest.mark.slow
def test_an_editable_install_imports_from_any_folder(tmp_path):
    """In a throwaway venv over this interpreter's packages (offline: no index, no build isolation)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "-e", str(REPO_ROOT)], check=True, capture_output=True, text=True)
    code = ("import deploy, hardware, labs, models, pipeline, benchmarks, deploy.k210.compiler.passes; "
            "from pipeline.config import REPO_ROOT; print(REPO_ROOT); "
            "import importlib.util; print(importlib.util.find_spec('tests'))")
    done = subprocess.run([str(python), "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert done.stdout.splitlines() == [str(REPO_ROOT), "None"]
