"""Image + box transforms for training: letterbox to the model input, scale/crop jitter, flips, colour jitter.
Geometric transforms move the boxes with the pixels, so a box keeps covering the same object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.letterbox import LETTERBOX_FILL, letterbox_image


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed on the model input: input = image * (scale_x, scale_y) + (pad_x, pad_y)."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) boxes from input pixels back to original image pixels."""
        out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) boxes from original image pixels to input pixels."""
        out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        out[:, [0, 2]] = out[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = out[:, [1, 3]] * self.scale_y + self.pad_y
        return out


@dataclass(frozen=True)
class AugmentParams:
    min_scale: float = 0.55  # smallest crop side as a fraction of the image side
    max_zoom_out: float = 1.4  # largest canvas side as a multiple of the image side
    aspect_jitter: float = 0.2
    flip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    min_visible: float = 0.4  # drop a box whose visible part is less than this fraction of it


def letterbox(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, Letterbox]:
    """The project's letterbox (models/letterbox.py, the firmware's too) with the boxes moved along."""
    canvas, fit = letterbox_image(image, size)
    h, w = image.shape[:2]
    placed = Letterbox(fit.width / w, fit.height / h, fit.pad_x, fit.pad_y)
    return canvas, placed.to_input(boxes), placed


def crop_boxes(boxes: np.ndarray, labels: np.ndarray, window: tuple[float, float, float, float],
               min_visible: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes relative to a window (x1, y1, x2, y2), clipped; boxes less than `min_visible` inside are dropped."""
    x1, y1, x2, y2 = window
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = np.stack([np.clip(boxes[:, 0], x1, x2), np.clip(boxes[:, 1], y1, y2),
                        np.clip(boxes[:, 2], x1, x2), np.clip(boxes[:, 3], y1, y2)], axis=1)
    visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (visible >= min_visible * np.maximum(area, 1e-6)) & (clipped[:, 2] - clipped[:, 0] >= 1) & (
        clipped[:, 3] - clipped[:, 1] >= 1)
    shifted = clipped[keep] - np.array([x1, y1, x1, y1], np.float32)
    return shifted.astype(np.float32), labels[keep]


def random_crop(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                params: AugmentParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop a random window (which may extend past the image: zoom out, filled) with jittered scale and aspect."""
    h, w = image.shape[:2]
    side = rng.uniform(params.min_scale, params.max_zoom_out)
    aspect = np.exp(rng.uniform(-params.aspect_jitter, params.aspect_jitter))
    cw, ch = max(8, int(round(w * side * aspect))), max(8, int(round(h * side / aspect)))
    x1 = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
    y1 = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
    canvas = np.full((ch, cw, 3), LETTERBOX_FILL, np.uint8)
    sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(w, x1 + cw), min(h, y1 + ch)
    canvas[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
    new_boxes, new_labels = crop_boxes(boxes, labels, (x1, y1, x1 + cw, y1 + ch), params.min_visible)
    return canvas, new_boxes, new_labels


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return image[:, ::-1].copy(), flipped


def colour_jitter(image: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
    """Random brightness, contrast and saturation; geometry untouched."""
    img = image.astype(np.float32)
    img *= 1 + rng.uniform(-params.brightness, params.brightness)
    mean = img.mean()
    img = (img - mean) * (1 + rng.uniform(-params.contrast, params.contrast)) + mean
    grey = img.mean(axis=2, keepdims=True)
    img = (img - grey) * (1 + rng.uniform(-params.saturation, params.saturation)) + grey
    return np.clip(img, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            params: AugmentParams = AugmentParams(), colour: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop/zoom, horizontal flip and (optionally) colour jitter."""
    image, boxes, labels = random_crop(image, boxes, labels, rng, params)
    if rng.random() < params.flip:
        image, boxes = hflip(image, boxes)
    if colour:
        image = colour_jitter(image, rng, params)
    return image, boxes, labels
