"""Helpers for the hostile-input tests: run a task the way a user does and check that it refused cleanly (exit code
2, one line naming the file/field/expectation, no traceback, nothing changed in build/)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from invoke import Collection, Program

import tasks
from pipeline.config import REPO_ROOT
from pipeline.lock import LOCK_NAME


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def snapshot(root: Path) -> dict[str, str]:
    """Every file below `root` (the lock file aside, it is no artifact) with its content hash."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def run_in_process(args: list[str], build_root: Path, monkeypatch) -> Outcome:
    """`invoke <args>` through invoke's Program API in this process (fast), with build/ at `build_root`."""
    argv = ["invoke", *args]
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(build_root))
    monkeypatch.setattr(sys, "argv", argv)
    program = Program(namespace=Collection.from_module(tasks), version="test")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            program.run(argv, exit=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Outcome(code, out.getvalue(), err.getvalue())


def run_subprocess(args: list[str], build_root: Path, timeout: float = 120) -> Outcome:
    """`python -m invoke <args>` as a user runs it, with build/ at `build_root`."""
    env = dict(os.environ, PIPELINE_BUILD_ROOT=str(build_root))
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_refused(outcome: Outcome, *words: str) -> str:
    """Exit code 2 and exactly one `error:` line on stderr containing every one of `words`; no traceback."""
    assert outcome.code == 2, (outcome.code, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr[-2000:]
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, outcome.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]
