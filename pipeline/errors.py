"""The one error type every stage raises for bad input, so the CLI can print it and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Bad input or an impossible request, described for a person: where, which field, what was expected."""

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None,
                 expected: str | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.field = field
        self.expected = expected
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        text = f"{prefix}: {message}" if prefix else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
