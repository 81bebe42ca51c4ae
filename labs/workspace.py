"""Where a lab's configs and data subsets live: build/labs/ (under $PIPELINE_BUILD_ROOT when set). The capstone's
full lab uses the project's own classroom configs instead, whose trained models the project reproduces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.atomic import write_text
from pipeline.config import REPO_ROOT, build_root

# lab config name -> the project config the 90-minute lab uses in its place
PROJECT_CONFIGS = {"lab_classroom": "classroom.yaml", "lab_face_detector": "classroom_detector.yaml",
                   "lab_recognizer": "recognizer.yaml"}


def workspace() -> Path:
    return build_root() / "labs"


def config_path(name: str, fast: bool) -> Path:
    """The config a lab step names as `name` (e.g. lab_detector)."""
    if not fast and name in PROJECT_CONFIGS:
        return REPO_ROOT / "configs" / PROJECT_CONFIGS[name]
    return workspace() / f"{name}.yaml"


def build_folder(name: str, fast: bool) -> Path:
    """Where the pipeline writes the artifacts of the config a lab step names as `name`."""
    return build_root() / config_path(name, fast).stem


def written_by_lab(name: str, fast: bool) -> bool:
    """Whether `invoke lab` writes this config (the project's own configs are never rewritten)."""
    return fast or name not in PROJECT_CONFIGS


def write_config(name: str, values: dict[str, Any], header: str) -> Path:
    """Write a lab config (a comment header, then YAML) atomically; returns its path."""
    path = config_path(name, fast=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    write_text(path, comment + yaml.safe_dump(values, sort_keys=False))
    return path
