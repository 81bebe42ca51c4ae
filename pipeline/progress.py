"""Progress bars with rate and ETA for long work (tqdm), quiet when not on a terminal unless asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate `items` while showing a bar with count, rate and ETA on stderr."""
    yield from tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True, mininterval=0.5)


def bar(*, desc: str, total: int | None, unit: str = "it", unit_scale: bool = False, disable: bool = False) -> tqdm:
    """A manual bar (call .update(n)); use as a context manager. disable=True shows nothing."""
    return tqdm(desc=desc, total=total, unit=unit, unit_scale=unit_scale, dynamic_ncols=True, mininterval=0.5,
                disable=disable)
