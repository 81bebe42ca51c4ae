"""Problems found while reading a data set: fail at once in strict mode, otherwise skip and count them."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError


@dataclass
class ProblemLog:
    """Collects skipped items by kind; with strict=True the first problem raises."""

    strict: bool = False
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    repairs: Counter = field(default_factory=Counter)

    def report(self, kind: str, message: str, path: Path | str, *, field_name: str | None = None,
               expected: str | None = None) -> None:
        self.add(kind, PipelineError(message, path=path, field=field_name, expected=expected))

    def add(self, kind: str, error: PipelineError) -> None:
        if self.strict:
            raise error
        self.counts[kind] += 1
        self.examples.setdefault(kind, str(error))

    def repaired(self, kind: str) -> None:
        """Count a small defect that was fixed rather than skipped (e.g. a box clipped by a pixel)."""
        self.repairs[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, object]:
        return {"skipped": dict(self.counts), "examples": dict(self.examples), "repaired": dict(self.repairs)}

    def warn(self, stream=sys.stderr) -> None:
        for kind, count in sorted(self.counts.items()):
            print(f"warning: skipped {count} x {kind}, e.g. {self.examples[kind]}", file=stream)
