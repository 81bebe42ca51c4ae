"""Run one pipeline stage through the manifest: skip it when its inputs are unchanged, record it otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import remove_stale_temps
from pipeline.errors import PipelineError
from pipeline.lock import build_lock
from pipeline.manifest import Manifest


@dataclass
class StageResult:
    name: str
    skipped: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def run_stage(build_dir: Path, name: str, *, inputs: list[Path], params: dict[str, Any], outputs: list[Path],
              work: Callable[[], dict[str, Any]], force: bool = False, tools: list[str] | None = None,
              say: Callable[[str], None] = print) -> StageResult:
    """Call `work()` (which writes `outputs` and returns metrics) unless the manifest shows it is current.

    The build folder's lock is held throughout, so no other run writes there between the check and the record; the
    manifest records the inputs as they were hashed before the work, i.e. the ones the work read."""
    with build_lock(build_dir):
        remove_stale_temps(build_dir)
        manifest = Manifest(build_dir)
        hashes = manifest.input_hashes(inputs)
        if not force and manifest.is_current(name, inputs, params, outputs, input_hashes=hashes):
            say(f"[{name}] skipped: inputs and parameters unchanged since the last run (use --force to re-run)")
            return StageResult(name, skipped=True, metrics=manifest.stage(name).get("metrics", {}))
        metrics = work() or {}
        missing = [path for path in outputs if not Path(path).exists()]
        if missing:
            raise PipelineError(f"stage '{name}' finished without writing this output, so it is not recorded as done",
                                path=missing[0], expected="every output of the stage")
        Manifest(build_dir).record(name, inputs=inputs, params=params, outputs=outputs, metrics=metrics, tools=tools,
                                   input_hashes=hashes)
    return StageResult(name, skipped=False, metrics=metrics)
