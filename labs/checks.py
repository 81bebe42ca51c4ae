"""What `invoke lab-check` reads: the artifacts and manifest records a lab's steps leave in the build folders, each
compared with an objective bar. A missing artifact names the step that makes it, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labs.workspace import build_folder
from pipeline.manifest import Manifest


class StepNotDone(Exception):
    """An artifact a check needs is missing: the student has not run (or not finished) the step that makes it."""


@dataclass(frozen=True)
class Outcome:
    passed: bool
    detail: str


@dataclass(frozen=True)
class Check:
    """One objective bar of a lab: `step` (1-based) is the step whose output it reads; `measure(fast)` passes or
    fails it (raising StepNotDone when that output is missing)."""

    what: str
    step: int
    points: int
    measure: Callable[[bool], Outcome]
    full_only: bool = False  # a bar only the 90-minute lab's training reaches; the fast path skips it


def stage_metrics(config: str, stage: str, fast: bool) -> dict[str, Any]:
    """The metrics a finished stage recorded in build/<config>/manifest.json."""
    folder = build_folder(config, fast)
    entry = Manifest(folder).stage(stage) if (folder / "manifest.json").is_file() else None
    if entry is None:
        raise StepNotDone(f"{folder.name}/manifest.json records no finished `{stage}` stage")
    return entry.get("metrics") or {}


def artifact(config: str, name: str, fast: bool) -> Path:
    folder = build_folder(config, fast)
    path = folder / name
    if not path.exists():
        raise StepNotDone(f"{path.relative_to(folder.parent)} does not exist")
    return path


def json_artifact(config: str, name: str, fast: bool) -> dict[str, Any]:
    return json.loads(artifact(config, name, fast).read_text(encoding="utf-8"))


def at_least(value: float, bar: float, what: str) -> Outcome:
    return Outcome(value >= bar, f"{what} {value:.4g} (bar: >= {bar:g})")


def at_most(value: float, bar: float, what: str) -> Outcome:
    return Outcome(value <= bar, f"{what} {value:.4g} (bar: <= {bar:g})")


def exists(config: str, *names: str) -> Callable[[bool], Outcome]:
    """A check that each named artifact exists and is not empty."""

    def measure(fast: bool) -> Outcome:
        paths = [artifact(config, name, fast) for name in names]
        empty = [p.name for p in paths if p.is_file() and p.stat().st_size == 0]
        return Outcome(not empty, f"empty: {', '.join(empty)}" if empty else f"{', '.join(names)} written")

    return measure


def stage_done(config: str, stage: str) -> Callable[[bool], Outcome]:
    def measure(fast: bool) -> Outcome:
        stage_metrics(config, stage, fast)
        return Outcome(True, f"`{stage}` finished")

    return measure


def bar(full: float, fast: float) -> Callable[[bool], float]:
    """A bar with one value for the 90-minute lab and another for the tiny configs CI walks."""
    return lambda is_fast: fast if is_fast else full
