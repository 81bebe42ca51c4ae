"""`invoke lab-check N`: every bar of lab N, passed or not, and a score out of 100 with what is missing."""

from __future__ import annotations

from dataclasses import dataclass

from labs.checks import Outcome, StepNotDone
from labs.course import render_command
from labs.prepare import lab


@dataclass(frozen=True)
class Scored:
    what: str
    points: int
    outcome: Outcome


@dataclass(frozen=True)
class LabScore:
    number: int
    fast: bool
    rows: list[Scored]

    @property
    def score(self) -> int:
        """Points earned out of 100 (out of the points the fast path checks, scaled to 100)."""
        total = sum(row.points for row in self.rows)
        return round(100 * sum(row.points for row in self.rows if row.outcome.passed) / total)

    def text(self) -> str:
        lines = [f"lab {self.number}{' (fast path)' if self.fast else ''}: {self.score}/100"]
        for row in self.rows:
            mark = "ok  " if row.outcome.passed else "MISS"
            lines.append(f"  [{mark}] {row.what} ({row.points} points): {row.outcome.detail}")
        return "\n".join(lines)


def check_lab(number: int, fast: bool = False) -> LabScore:
    """Score lab `number` on the artifacts in the build folders; a missing one names the step that makes it."""
    target = lab(number)
    rows = []
    for check in target.checks:
        if check.full_only and fast:
            continue
        try:
            outcome = check.measure(fast)
        except StepNotDone as missing:
            step = render_command(target.steps[check.step - 1].command, fast)
            outcome = Outcome(False, f"step {check.step} not done (`{step}`): {missing}")
        rows.append(Scored(check.what, check.points, outcome))
    return LabScore(number, fast, rows)
