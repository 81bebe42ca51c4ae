"""Shared fixtures: the real data in ../shared/data (skip with a reason where a clone does not have it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import SHARED_DATA


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present at {path} (it ships beside the repo in CI, not in a user's clone)")
    return path


def rtthread_root() -> Path:
    """The real RT-Thread 5.0.1 tree in ../shared/rtthread; the calling test is skipped with a reason without it."""
    from deploy.firmware.rtthread_tree import SHARED_RTT_ROOT

    if not (SHARED_RTT_ROOT / "include" / "rtdef.h").is_file():
        pytest.skip(f"the real RT-Thread tree is not present at {SHARED_RTT_ROOT} (it ships beside the repo in CI)")
    return SHARED_RTT_ROOT
