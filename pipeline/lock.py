"""One lock per build folder (fcntl.flock on build/<config>/.lock): a second run that would write the same folder
stops with a clear error instead of mixing its artifacts with the first one's."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import PipelineError

LOCK_NAME = ".lock"
_held: dict[Path, tuple[int, int]] = {}  # build folder -> (file descriptor, nesting depth) in this process
_task_held: list[Path] = []  # folders held until the running task ends


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "another process"


def acquire(build_dir: Path) -> None:
    """Take the folder's lock (again, if this process holds it already); PipelineError when another run holds it."""
    key = Path(build_dir).resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        return
    key.mkdir(parents=True, exist_ok=True)
    lock_path = key / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PipelineError(f"another run ({_holder(lock_path)}) is writing to this build folder", path=key,
                            expected="one invoke command per config at a time: wait for it to finish") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = (fd, 1)


def release(build_dir: Path) -> None:
    key = Path(build_dir).resolve()
    fd, depth = _held[key]
    if depth > 1:
        _held[key] = (fd, depth - 1)
        return
    del _held[key]
    os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """Hold the build folder's lock for the block."""
    acquire(build_dir)
    try:
        yield
    finally:
        release(build_dir)


def hold_for_task(build_dir: Path) -> None:
    """Hold the lock of an existing build folder until the running task ends (see task_scope)."""
    if Path(build_dir).is_dir():
        acquire(build_dir)
        _task_held.append(Path(build_dir).resolve())


@contextlib.contextmanager
def task_scope() -> Iterator[None]:
    """Release every lock taken by hold_for_task inside the block when it ends."""
    depth = len(_task_held)
    try:
        yield
    finally:
        while len(_task_held) > depth:
            release(_task_held.pop())
