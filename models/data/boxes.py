"""Checking one annotated box against its image: repair a pixel of overhang, refuse the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.problems import ProblemLog

# Boxes may pass the image edge by this fraction of the side (at least 2 px) and are then clipped: VOC sets
# often store an inclusive x2 equal to the width. Anything further out is an annotation error.
EDGE_TOLERANCE = 0.01


def check_box(box: tuple[float, float, float, float], width: int, height: int, log: ProblemLog,
              path: Path) -> np.ndarray | None:
    """Return the box clipped to the image, or None (reported to `log`) when it is invalid."""
    x1, y1, x2, y2 = box
    if not all(np.isfinite(v) for v in box):
        log.report("bad box", f"box {box} has a non-finite coordinate", path, field_name="bndbox")
        return None
    if x2 <= x1 or y2 <= y1:
        log.report("bad box", f"box {box} has x2<=x1 or y2<=y1", path, field_name="bndbox",
                   expected="xmin < xmax and ymin < ymax")
        return None
    tol_x, tol_y = max(2.0, EDGE_TOLERANCE * width), max(2.0, EDGE_TOLERANCE * height)
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        log.report("box outside image", f"box {box} lies outside the {width}x{height} image", path,
                   field_name="bndbox", expected=f"0 <= x <= {width} and 0 <= y <= {height}")
        return None
    clipped = np.array([max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)], np.float32)
    if not np.array_equal(clipped, np.asarray(box, np.float32)):
        log.repaired("box clipped to image edge")
    return clipped
