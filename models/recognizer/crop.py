"""The one face-crop policy: a detector box -> a square around its centre with a margin -> resized to the input.

Training, evaluation and the firmware all cut faces with it; `firmware/app/face_crop.c` is its C twin and gives the
same bytes. Everything after the box is rounded to whole pixels is integer arithmetic, so the two cannot drift:

- the box is rounded to whole pixels (x1, y1 inclusive, x2, y2 exclusive);
- the square's side is max(width, height) * (1000 + 2 * margin_permille) / 1000, kept in 16.16 fixed point, and
  its centre is the box centre;
- output pixel (i, j) samples the source at the centre of its cell, bilinearly, with 8-bit weights; samples outside
  the image repeat the nearest edge pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError

FRACTION_BITS = 16
ONE = 1 << FRACTION_BITS
WEIGHT_BITS = 8


@dataclass(frozen=True)
class CropPolicy:
    """Square crop of side max(w, h) * (1 + 2 * margin) around the box centre, resized to size x size."""

    size: int
    margin_permille: int = 250

    def __post_init__(self) -> None:
        if self.size < 4:
            raise PipelineError(f"crop size {self.size}", field="model.input_size", expected="at least 4 pixels")
        if not 0 <= self.margin_permille <= 2000:
            raise PipelineError(f"crop margin {self.margin_permille / 1000:g}", field="recognizer.crop_margin",
                                expected="a margin between 0 and 2 box sides")


def _half_up(value: float) -> int:
    """floor(value + 0.5), exactly: the sum itself would be rounded (0.49999999999999994 + 0.5 == 1.0)."""
    whole = math.floor(value)
    return whole + (value - whole >= 0.5)


def rounded_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A box in pixels rounded to whole pixels (half up), at least one pixel wide and high."""
    x1, y1, x2, y2 = (_half_up(float(v)) for v in box)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def crop_geometry(box: tuple[int, int, int, int], policy: CropPolicy) -> tuple[int, int, int]:
    """(left, top, step) in 16.16 fixed point: the square's top-left corner and the source distance per output pixel."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1000 + 2 * policy.margin_permille) * ONE // 1000
    left = (x1 + x2) * (ONE // 2) - side // 2
    top = (y1 + y2) * (ONE // 2) - side // 2
    return left, top, side // policy.size


def _sample_positions(start: int, step: int, count: int, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high, clamped to [0, limit)) and 8-bit weights of the high one, per output pixel."""
    centres = start + ((2 * np.arange(count, dtype=np.int64) + 1) * step >> 1) - ONE // 2
    low = centres >> FRACTION_BITS
    weight = (centres >> (FRACTION_BITS - WEIGHT_BITS)) & ((1 << WEIGHT_BITS) - 1)
    return np.clip(low, 0, limit - 1), np.clip(low + 1, 0, limit - 1), weight


def crop_face(image: np.ndarray, box: tuple[float, float, float, float], policy: CropPolicy) -> np.ndarray:
    """The policy's size x size x C uint8 crop of an H x W x C (or H x W) uint8 image around `box` (pixels)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise PipelineError(f"image of dtype {image.dtype} and shape {image.shape}", field="crop",
                            expected="an H x W x C uint8 image")
    pixels = image[:, :, None] if image.ndim == 2 else image
    left, top, step = crop_geometry(rounded_box(box), policy)
    x_low, x_high, wx = _sample_positions(left, step, policy.size, pixels.shape[1])
    y_low, y_high, wy = _sample_positions(top, step, policy.size, pixels.shape[0])
    p = pixels.astype(np.int64)
    full = 1 << WEIGHT_BITS
    wx, wy = wx[None, :, None], wy[:, None, None]
    upper = p[y_low][:, x_low] * (full - wx) + p[y_low][:, x_high] * wx
    lower = p[y_high][:, x_low] * (full - wx) + p[y_high][:, x_high] * wx
    out = (upper * (full - wy) + lower * wy + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)
    out = out.astype(np.uint8)
    return out[:, :, 0] if image.ndim == 2 else out


def mirrored(crops: np.ndarray) -> np.ndarray:
    """The horizontal mirror image of a crop (H x W x C) or of a batch of crops (N x H x W x C): column j becomes
    column W - 1 - j (firmware/app/face_crop.c face_crop_mirror is the C twin, on the planar KPU input)."""
    crops = np.asarray(crops)
    if crops.ndim not in (3, 4):
        raise PipelineError(f"crops of shape {crops.shape}", field="crop", expected="H x W x C or N x H x W x C")
    return np.ascontiguousarray(crops[..., ::-1, :])


def centred_box(width: int, height: int, policy: CropPolicy) -> tuple[int, int, int, int]:
    """The box whose policy crop is the largest centred square of a width x height image: for images that are
    already face crops made with the same margin (CelebA-299, AT&T)."""
    side = min(width, height) * 1000 // (1000 + 2 * policy.margin_permille)
    x1, y1 = (width - side) // 2, (height - side) // 2
    return x1, y1, x1 + side, y1 + side
