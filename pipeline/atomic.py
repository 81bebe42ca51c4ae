"""Write files so that a reader never sees a partial artifact: write a temp file, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

TEMP_PREFIX = ".tmp-"  # every temp file of an atomic write is named .tmp-<pid>-<target name>.<random><suffix>


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temp files (and temp folders) below `folder` named `.tmp-<pid>-...` whose process no longer runs:
    leftovers of writers killed mid-write."""
    removed = []
    for path in sorted(Path(folder).rglob(f"{TEMP_PREFIX}*")):
        pid = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not path.exists():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; it replaces `target` only if the block finishes without error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temp name carries this process's id, so a later run can tell a killed writer's leftover (see
    # remove_stale_temps), and ends like the target for writers that check the extension (Keras wants ".keras")
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{target.name}.", suffix=target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `target`; it replaces `target` only if the block finishes without error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{TEMP_PREFIX}{os.getpid()}-{target.name}."  # a killed writer's leftover is removed later, as above
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{prefix}old.", dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_open(target: str | Path) -> Iterator[BinaryIO]:
    """Open a binary file for writing that appears at `target` only when closed without error."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        yield handle


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_open(target) as handle:
        handle.write(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, value: Any) -> None:
    write_text(target, json.dumps(value, indent=2, sort_keys=False) + "\n")
