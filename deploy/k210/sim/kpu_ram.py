"""Feature maps in the simulated KPU RAM: read and write a (C, H, W) map in the K210 layout (spec §1.3; the geometry
itself is in hardware.k210)."""

from __future__ import annotations

import numpy as np

from hardware.k210 import KPU_LINE_BYTES, KPU_RAM_LINES, map_lines, row_layout
from pipeline.errors import PipelineError


def _block_view(ram: np.ndarray, line: int, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """A writable (blocks, groups, H, row bytes per channel) view of the map stored at `line`."""
    channels, height, width = shape
    groups, row_len, pitch = row_layout(width)
    lines = map_lines(channels, height, width)
    if line < 0 or line + lines > KPU_RAM_LINES or min(shape) < 1:
        raise PipelineError(f"map of {channels}x{height}x{width} at line {line} needs {lines} lines, beyond the "
                            f"{KPU_RAM_LINES} lines of KPU RAM", field=what, expected="a map inside the 2 MiB KPU RAM")
    blocks = -(-channels // groups)
    region = ram[line * KPU_LINE_BYTES:(line + blocks * height * row_len) * KPU_LINE_BYTES]
    if groups == 1:
        return region.reshape(blocks, 1, height, row_len * KPU_LINE_BYTES)
    return region.reshape(blocks, height, groups, pitch).transpose(0, 2, 1, 3)


def read_map(ram: np.ndarray, line: int, shape: tuple[int, int, int], what: str = "map") -> np.ndarray:
    """Copy of the (C, H, W) uint8 map at `line`."""
    channels, height, width = shape
    view = _block_view(ram, line, shape, what)
    return np.ascontiguousarray(view.reshape(-1, height, view.shape[-1])[:channels, :, :width])


def write_map(ram: np.ndarray, line: int, data: np.ndarray, what: str = "map") -> None:
    """Store the (C, H, W) uint8 map `data` at `line` in the KPU layout (bytes past W in a row left untouched)."""
    channels, height, width = data.shape
    view = _block_view(ram, line, data.shape, what)
    groups = view.shape[1]
    full = channels // groups
    view[:full, :, :, :width] = data[:full * groups].reshape(full, groups, height, width)
    if channels % groups:
        view[full, :channels % groups, :, :width] = data[full * groups:]
