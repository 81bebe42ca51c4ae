"""YOLOv2 region decoding and NMS in float32 NumPy, written as the reference for the C firmware's region layer.

Layout of the raw output (HWC, float32 logits): `grid[row, col, a * (5 + C) + e]` for anchor a and entry e:
  e = 0, 1  tx, ty   centre x = (col + sigmoid(tx)) / W,  centre y = (row + sigmoid(ty)) / H
  e = 2, 3  tw, th   width    = exp(tw) * anchor_w / W,   height   = exp(th) * anchor_h / H
  e = 4     objectness logit, passed through a sigmoid
  e = 5..   class logits, passed through a softmax (max-subtracted) over the C classes
A class score is sigmoid(obj) * softmax[c]; a detection is kept when score > threshold (strict).
Boxes are (x1, y1, x2, y2) = centre -/+ size / 2 as fractions of the model input, NOT clipped.

The equivalent C loop (all math in float, `expf`; sigmoid(x) = 1 / (1 + expf(-x))):
  for row in 0..H-1: for col in 0..W-1: for a in 0..A-1:
      obj = sigmoid(t[4]); m = max(t[5..]); sum = sum(expf(t[5+c] - m));
      for c in 0..C-1: score = obj * (expf(t[5+c] - m) / sum); if score > threshold: append detection
Detections come out in exactly that order. NMS then sorts them by score, descending and stable (ties keep the
decode order), walks the sorted list, keeps a detection unless an already-kept detection of the same class
overlaps it with IoU > iou_threshold, and returns the kept ones in sorted order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Detection:
    """One detected object: box (x1, y1, x2, y2) as fractions of the model input, score in (0, 1], class index."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) as the firmware computes it: exp overflowing to inf gives exactly 0, as expf does in C."""
    one = np.float32(1.0)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True, dtype=np.float32)


def check_output_shape(grid_hwc: np.ndarray, anchors: np.ndarray, num_classes: int) -> None:
    """Raise PipelineError unless the grid is (H, W, A * (5 + C)) for these anchors and classes."""
    expected = len(anchors) * (5 + num_classes)
    if grid_hwc.ndim != 3 or grid_hwc.shape[-1] != expected:
        raise PipelineError(f"output shape {grid_hwc.shape}", field="grid_hwc",
                            expected=f"(H, W, {expected}) for {len(anchors)} anchors x (5 + {num_classes} classes)")


def decode_yolov2(grid_hwc: np.ndarray, anchors: np.ndarray, num_classes: int,
                  score_threshold: float) -> list[Detection]:
    """All (box, class) pairs whose score sigmoid(obj) * softmax(class) exceeds the threshold, in C loop order."""
    anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
    grid_hwc = np.asarray(grid_hwc, dtype=np.float32)
    check_output_shape(grid_hwc, anchors, num_classes)
    height, width, _ = grid_hwc.shape
    t = grid_hwc.reshape(height, width, len(anchors), 5 + num_classes)
    cols = np.arange(width, dtype=np.float32)[None, :, None]
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    cx = (cols + _sigmoid(t[..., 0])) / np.float32(width)
    cy = (rows + _sigmoid(t[..., 1])) / np.float32(height)
    with np.errstate(over="ignore"):  # an untrained model's huge logits give inf sizes, as expf does in C
        bw = np.exp(t[..., 2]) * anchors[:, 0] / np.float32(width)
        bh = np.exp(t[..., 3]) * anchors[:, 1] / np.float32(height)
    half = np.float32(0.5)
    boxes = np.stack([cx - bw * half, cy - bh * half, cx + bw * half, cy + bh * half], axis=-1)
    scores = _sigmoid(t[..., 4])[..., None] * _softmax(t[..., 5:])
    # np.nonzero walks a C-ordered (H, W, A, C) array in the documented row, col, anchor, class order.
    rr, cc, aa, kk = np.nonzero(scores > np.float32(score_threshold))
    return [Detection(box=tuple(float(v) for v in boxes[r, c, a]), score=float(scores[r, c, a, k]), class_id=int(k))
            for r, c, a, k in zip(rr, cc, aa, kk, strict=True)]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes in float32; 0 when the union is empty."""
    ax1, ay1, ax2, ay2 = (np.float32(v) for v in a)
    bx1, by1, bx2, by2 = (np.float32(v) for v in b)
    zero = np.float32(0.0)
    iw = max(zero, min(ax2, bx2) - max(ax1, bx1))
    ih = max(zero, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return float(inter / union) if union > zero else 0.0


def nms(dets: list[Detection], iou_threshold: float) -> list[Detection]:
    """Greedy per-class non-maximum suppression: highest score first; drop same-class boxes with IoU > threshold."""
    ordered = sorted(dets, key=lambda d: -d.score)  # stable: equal scores keep decode order
    kept: list[Detection] = []
    for det in ordered:
        if all(k.class_id != det.class_id or box_iou(k.box, det.box) <= iou_threshold for k in kept):
            kept.append(det)
    return kept


def chw_to_hwc(flat: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """Reshape a flat CHW output (as the kmodel's dequantize layer writes it) to the (H, W, C) layout above."""
    flat = np.asarray(flat, dtype=np.float32)
    if flat.size != channels * height * width:
        raise PipelineError(f"{flat.size} values", field="output",
                            expected=f"{channels} x {height} x {width} = {channels * height * width}")
    return flat.reshape(channels, height, width).transpose(1, 2, 0)
