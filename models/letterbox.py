"""The one letterbox of the project: a frame scaled to fit the model input with its aspect ratio kept, centred, the
rest filled. Training, evaluation and the firmware (firmware/app/letterbox.c, byte for byte) all use it, so the
kmodel is scored on exactly the bytes the board feeds it.

Scaling is a separable triangle (bilinear) filter whose support widens with the downscale factor (it averages
rather than skips pixels, as PIL's BILINEAR does), in integer arithmetic so that C and Python agree exactly: the
raw weight of source pixel j for output pixel i of an axis is max(0, 2M - |(2j + 1) dst - (2i + 1) src|) with
M = max(src, dst), normalised to WEIGHT_BITS fixed point; the horizontal pass is rounded to bytes, then the
vertical pass runs on them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

WEIGHT_BITS = 14
LETTERBOX_FILL = 0  # the firmware pads a camera frame with the same value


@dataclass(frozen=True)
class Fit:
    """Where a frame lands in the model input (struct letterbox): fitted size and centring offsets."""

    width: int
    height: int
    pad_x: int
    pad_y: int


def letterbox_fit(frame_size: tuple[int, int], input_size: tuple[int, int]) -> Fit:
    """The integer letterbox geometry for a (w, h) frame and a (w, h) model input."""
    (fw, fh), (iw, ih) = frame_size, input_size
    if fw * ih >= fh * iw:
        width, height = iw, fh * iw // fw
    else:
        width, height = fw * ih // fh, ih
    width, height = max(width, 1), max(height, 1)
    return Fit(width, height, (iw - width) // 2, (ih - height) // 2)


@lru_cache(maxsize=256)
def axis_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight), each (dst, taps): the source pixels of every output pixel of an axis and their fixed-point
    weights (unused taps: index 0, weight 0)."""
    m2 = 2 * max(src, dst)
    centre = (2 * np.arange(dst, dtype=np.int64) + 1) * src
    first = np.where(centre > m2, (centre - m2) // (2 * dst), 0)
    last = np.minimum(src - 1, (centre + m2) // (2 * dst))
    js = first[:, None] + np.arange(int((last - first).max()) + 1)[None, :]
    raw = np.where(js <= last[:, None], np.maximum(0, m2 - np.abs((2 * js + 1) * dst - centre[:, None])), 0)
    total = raw.sum(axis=1, keepdims=True)
    weight = ((raw << (WEIGHT_BITS + 1)) + total) // (2 * total)
    weight = np.where(raw > 0, weight, 0)
    index = np.where(raw > 0, js, 0)
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight.astype(np.int32)


def _pass(image: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """One axis of the filter (axis 0 rows, 1 columns) on an H x W x C uint8 image, rounded to bytes."""
    shape = [1] * image.ndim
    shape[axis] = -1
    acc = np.zeros(image.shape[:axis] + (index.shape[0],) + image.shape[axis + 1:], np.int32)
    for k in range(index.shape[1]):
        acc += np.take(image, index[:, k], axis=axis) * weight[:, k].reshape(shape)
    return np.clip((acc + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS, 0, 255).astype(np.uint8)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An H x W x C uint8 image resized to width x height (columns first, then rows)."""
    h, w = image.shape[:2]
    out = image if width == w else _pass(image, *axis_taps(w, width), axis=1)
    return out if height == h else _pass(out, *axis_taps(h, height), axis=0)


def letterbox_image(image: np.ndarray, input_size: tuple[int, int], fill: int = LETTERBOX_FILL
                    ) -> tuple[np.ndarray, Fit]:
    """The H x W x 3 uint8 model input of an H x W x 3 frame, and where the frame landed in it."""
    fit = letterbox_fit((image.shape[1], image.shape[0]), input_size)
    canvas = np.full((input_size[1], input_size[0], image.shape[2]), fill, np.uint8)
    canvas[fit.pad_y:fit.pad_y + fit.height, fit.pad_x:fit.pad_x + fit.width] = resize(image, fit.width, fit.height)
    return canvas, fit
