"""KPU RAM geometry (spec §1.3): 2 MiB in 64-byte lines, feature maps stored per channel block and row, with
2 or 4 channels sharing a line when the map is at most 32 or 16 pixels wide."""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError

KPU_RAM_BYTES = 2 * 1024 * 1024
LINE_BYTES = 64
KPU_RAM_LINES = KPU_RAM_BYTES // LINE_BYTES


def row_layout(width: int) -> tuple[int, int, int]:
    """(groups, row_len, row_pitch) for a map `width` pixels wide."""
    if width <= 16:
        return 4, 1, 16
    if width <= 32:
        return 2, 1, 32
    return 1, -(-width // LINE_BYTES), LINE_BYTES


def map_lines(channels: int, height: int, width: int) -> int:
    """KPU RAM lines taken by a C x H x W uint8 map."""
    groups, row_len, _ = row_layout(width)
    return row_len * height * -(-channels // min(channels, groups))


def _block_view(ram: np.ndarray, line: int, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """A writable (blocks, groups, H, row bytes per channel) view of the map stored at `line`."""
    channels, height, width = shape
    groups, row_len, pitch = row_layout(width)
    lines = map_lines(channels, height, width)
    if line < 0 or line + lines > KPU_RAM_LINES or min(shape) < 1:
        raise PipelineError(f"map of {channels}x{height}x{width} at line {line} needs {lines} lines, beyond the "
                            f"{KPU_RAM_LINES} lines of KPU RAM", field=what, expected="a map inside the 2 MiB KPU RAM")
    blocks = -(-channels // groups)
    region = ram[line * LINE_BYTES:(line + blocks * height * row_len) * LINE_BYTES]
    if groups == 1:
        return region.reshape(blocks, 1, height, row_len * LINE_BYTES)
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
