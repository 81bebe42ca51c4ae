"""Reading JSON artifacts written by another stage, with a clear error when one is missing or damaged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def read_json_object(path: Path, *, what: str, missing_hint: str) -> dict[str, Any]:
    """The JSON object in `path`; PipelineError naming the file when it is missing, not JSON or not an object."""
    if not path.is_file():
        raise PipelineError(f"{what} not found", path=path, expected=missing_hint)
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"not valid JSON: {exc}", path=path) from None
    if not isinstance(value, dict):
        raise PipelineError("top level is not an object", path=path, expected=what)
    return value
