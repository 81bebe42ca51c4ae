"""Detection metrics: VOC all-point AP@0.5, COCO-style AP@[.5:.95] (101-point), precision-recall, recall by size.

Matching (one rule for every metric): per class, detections of all images sorted by score (descending, stable);
each one is a true positive when its best-overlapping still-unmatched ground truth of that class in its image has
IoU >= the threshold, and that ground truth is then used up; otherwise it is a false positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.plotting import new_figure, save_figure

COCO_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
SIZE_BUCKETS = ((0, 16), (16, 32), (32, 64), (64, float("inf")))  # sqrt(area) in pixels of the model input


@dataclass(frozen=True)
class ImageResult:
    """One image: detections (boxes Nx4, scores N, labels N) and ground truth (boxes Mx4, labels M), same units."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray


@dataclass
class PRCurve:
    """Precision and recall after each detection in score order, with its scores; `num_gt` ground-truth boxes."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    num_gt: int
    matched: list[np.ndarray] = field(default_factory=list)  # per image: which ground truths were found


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of x1y1x2y2 boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of x1y1x2y2 boxes (N,)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pr_curve(results: list[ImageResult], class_id: int, iou_threshold: float) -> PRCurve:
    """Precision-recall of one class at one IoU threshold, matching as described in the module docstring."""
    gts = [r.gt_boxes[r.gt_labels == class_id] for r in results]
    matched = [np.zeros(len(g), bool) for g in gts]
    dets = [(score, image, box) for image, r in enumerate(results)
            for box, score, label in zip(r.boxes, r.scores, r.labels, strict=True) if label == class_id]
    dets.sort(key=lambda d: -d[0])
    tp = np.zeros(len(dets))
    for i, (_, image, box) in enumerate(dets):
        if not len(gts[image]):
            continue
        ious = np.where(matched[image], -1.0, pairwise_iou(box, gts[image])[0])
        best = int(ious.argmax())
        if ious[best] >= iou_threshold:
            tp[i], matched[image][best] = 1, True
    num_gt = sum(len(g) for g in gts)
    cum_tp = np.cumsum(tp)
    precision = cum_tp / np.arange(1, len(dets) + 1) if dets else np.zeros(0)
    recall = cum_tp / num_gt if num_gt else np.zeros(len(dets))
    return PRCurve(precision, recall, np.array([d[0] for d in dets]), num_gt, matched)


def _envelope(precision: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(precision[::-1])[::-1]


def ap_voc(curve: PRCurve) -> float:
    """VOC (2010+) all-point AP: area under the monotone precision envelope, summed where recall changes."""
    if curve.num_gt == 0 or not len(curve.recall):
        return 0.0
    recall = np.concatenate([[0.0], curve.recall])
    precision = _envelope(np.concatenate([[0.0], curve.precision]))
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def ap_coco_101(curve: PRCurve) -> float:
    """COCO AP at one threshold: mean envelope precision at recall 0, 0.01, ..., 1 (0 beyond the largest recall)."""
    if curve.num_gt == 0 or not len(curve.recall):
        return 0.0
    precision = _envelope(curve.precision)
    index = np.searchsorted(curve.recall, COCO_RECALL_POINTS, side="left")
    sampled = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def recall_by_size(results: list[ImageResult], score_threshold: float, iou_threshold: float = 0.5
                   ) -> dict[str, dict[str, float]]:
    """Recall per ground-truth size bucket (sqrt area), counting detections with score >= score_threshold."""
    kept = [ImageResult(r.boxes[r.scores >= score_threshold], r.scores[r.scores >= score_threshold],
                        r.labels[r.scores >= score_threshold], r.gt_boxes, r.gt_labels) for r in results]
    found = [np.zeros(len(r.gt_boxes), bool) for r in results]
    for class_id in np.unique(np.concatenate([r.gt_labels for r in results] + [np.zeros(0, int)])):
        curve = pr_curve(kept, int(class_id), iou_threshold)
        for image, r in enumerate(results):
            found[image][r.gt_labels == class_id] = curve.matched[image]
    sides = np.sqrt(np.clip(np.concatenate([box_areas(r.gt_boxes) for r in results] + [np.zeros(0)]), 0, None))
    hits = np.concatenate(found + [np.zeros(0, bool)])
    out = {}
    for low, high in SIZE_BUCKETS:
        inside = (sides >= low) & (sides < high)
        name = f"{low}-{high:g}px" if high != float("inf") else f">={low}px"
        out[name] = {"faces": int(inside.sum()), "recall": float(hits[inside].mean()) if inside.any() else 0.0}
    out["all"] = {"faces": int(len(hits)), "recall": float(hits.mean()) if len(hits) else 0.0}
    return out


def evaluate_results(results: list[ImageResult], classes: list[str], score_threshold: float) -> dict[str, Any]:
    """AP@0.5 (VOC all-point), AP@[.5:.95] (COCO 101-point), per class and mean, plus recall by face size."""
    per_class = {}
    for class_id, name in enumerate(classes):
        curves = {t: pr_curve(results, class_id, float(t)) for t in COCO_THRESHOLDS}
        per_class[name] = {"ap50": ap_voc(curves[0.5]), "ap50_coco": ap_coco_101(curves[0.5]),
                           "ap50_95": float(np.mean([ap_coco_101(c) for c in curves.values()])),
                           "ap75": ap_coco_101(curves[0.75]), "ground_truth": curves[0.5].num_gt}
    present = [v for v in per_class.values() if v["ground_truth"]]
    mean = {key: float(np.mean([v[key] for v in present])) if present else 0.0
            for key in ("ap50", "ap50_coco", "ap50_95", "ap75")}
    return {**mean, "per_class": per_class, "images": len(results),
            "recall_by_size": recall_by_size(results, score_threshold), "score_threshold": score_threshold}


def plot_pr_curves(curves: dict[str, PRCurve], png_path: Path, title: str) -> None:
    """Precision-recall curves (one line per label, e.g. per runtime) at IoU 0.5, written atomically."""
    fig, ax = new_figure()
    for label, curve in curves.items():
        ax.plot(curve.recall, curve.precision, label=f"{label} (AP {ap_voc(curve):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    save_figure(fig, png_path)
