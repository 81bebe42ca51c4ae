"""Run one pipeline stage through the manifest: skip it when its inputs are unchanged, record it otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.manifest import Manifest


@dataclass
class StageResult:
    name: str
    skipped: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def run_stage(build_dir: Path, name: str, *, inputs: list[Path], params: dict[str, Any], outputs: list[Path],
              work: Callable[[], dict[str, Any]], force: bool = False, tools: list[str] | None = None,
              say: Callable[[str], None] = print) -> StageResult:
    """Call `work()` (which writes `outputs` and returns metrics) unless the manifest shows it is current."""
    manifest = Manifest(build_dir)
    if not force and manifest.is_current(name, inputs, params, outputs):
        say(f"[{name}] skipped: inputs and parameters unchanged since the last run (use --force to re-run)")
        return StageResult(name, skipped=True, metrics=manifest.stage(name).get("metrics", {}))
    metrics = work() or {}
    Manifest(build_dir).record(name, inputs=inputs, params=params, outputs=outputs, metrics=metrics, tools=tools)
    return StageResult(name, skipped=False, metrics=metrics)
