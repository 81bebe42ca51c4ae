"""Counts and box-size / aspect histograms of a detection set, as a dict and a PNG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from models.data.problems import ProblemLog
from models.data.records import DetectionRecord


def box_sizes(records: list[DetectionRecord]) -> np.ndarray:
    """Nx2 (width, height) in pixels of every box."""
    boxes = [r.boxes for r in records if len(r.boxes)]
    if not boxes:
        return np.zeros((0, 2), np.float32)
    allb = np.concatenate(boxes)
    return np.stack([allb[:, 2] - allb[:, 0], allb[:, 3] - allb[:, 1]], axis=1)


def dataset_stats(records: list[DetectionRecord], classes: list[str], log: ProblemLog) -> dict[str, Any]:
    sizes = box_sizes(records)
    per_class = Counter(int(label) for r in records for label in r.labels)
    side = np.sqrt(sizes[:, 0] * sizes[:, 1]) if len(sizes) else np.zeros(0)
    aspect = sizes[:, 0] / sizes[:, 1] if len(sizes) else np.zeros(0)

    def summary(values: np.ndarray) -> dict[str, float]:
        if not len(values):
            return {}
        return {k: round(float(f(values)), 3) for k, f in
                (("min", np.min), ("median", np.median), ("mean", np.mean), ("max", np.max))}

    return {
        "images": len(records),
        "boxes": int(len(sizes)),
        "images_without_boxes": sum(1 for r in records if not len(r.boxes)),
        "boxes_per_class": {classes[i]: per_class.get(i, 0) for i in range(len(classes))},
        "box_side_px": summary(side),
        "box_aspect_w_over_h": summary(aspect),
        "image_width_px": summary(np.array([r.width for r in records], np.float32)),
        "image_height_px": summary(np.array([r.height for r in records], np.float32)),
        **log.summary(),
    }


def plot_box_histograms(records: list[DetectionRecord], title: str, png_path: Path) -> None:
    """Histograms of box side (sqrt of area, px), box side relative to the image, and aspect ratio."""
    from pipeline.plotting import new_figure, save_figure

    sizes = box_sizes(records)
    rel = np.concatenate([np.sqrt((r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1])
                                  / (r.width * r.height)) for r in records if len(r.boxes)] or [np.zeros(0)])
    fig, axes = new_figure(13, 3.8, columns=3)
    axes[0].hist(np.sqrt(sizes[:, 0] * sizes[:, 1]), bins=40, color="#3b7dd8")
    axes[0].set(xlabel="box side sqrt(w*h) [px]", ylabel="boxes", title="box size")
    axes[1].hist(rel, bins=40, color="#4caf50")
    axes[1].set(xlabel="box side / image side", title="relative size")
    axes[2].hist(sizes[:, 0] / np.maximum(sizes[:, 1], 1e-6), bins=40, color="#e07b39")
    axes[2].set(xlabel="aspect w/h", title="aspect ratio")
    fig.suptitle(title)
    save_figure(fig, png_path, dpi=90)
