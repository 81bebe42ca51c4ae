"""IoU k-means anchors: recovers clear clusters, seeded, sorted by area, letterbox scaling, PNG."""

from __future__ import annotations

import numpy as np
import pytest

from models.anchors import compute_anchors, letterboxed_sizes, mean_best_iou, plot_anchors, shape_iou
from models.data.records import DetectionRecord
from pipeline.errors import PipelineError

CENTRES_PX = np.array([[16.0, 20.0], [64.0, 64.0], [160.0, 96.0]])  # in pixels of a 320x256 input


def _clustered_boxes(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([c * rng.uniform(0.95, 1.05, size=(200, 2)) for c in CENTRES_PX])


def test_shape_iou_hand_values():
    np.testing.assert_allclose(shape_iou(np.array([[2.0, 2.0]]), np.array([[1.0, 1.0], [2.0, 4.0]])), [[0.25, 0.5]])


def test_kmeans_recovers_the_clusters_in_grid_cells_sorted_by_area():
    anchors = compute_anchors(_clustered_boxes(), 3, grid=(10, 8), input_size=(320, 256), seed=1)
    np.testing.assert_allclose(anchors, CENTRES_PX / 32.0, rtol=0.02)
    assert mean_best_iou(_clustered_boxes() / 32.0, anchors) > 0.9


def test_kmeans_is_seeded():
    boxes = np.random.default_rng(3).uniform(5, 100, size=(300, 2))
    first = compute_anchors(boxes, 5, (10, 8), (320, 256), seed=7)
    np.testing.assert_array_equal(first, compute_anchors(boxes, 5, (10, 8), (320, 256), seed=7))
    assert np.all(np.diff(first.prod(axis=1)) > 0)


def test_too_few_distinct_boxes_are_refused():
    with pytest.raises(PipelineError, match="at least 5 distinct"):
        compute_anchors(np.array([[10.0, 10.0]] * 20 + [[20.0, 20.0]]), 5, (10, 8), (320, 256), seed=0)


def test_letterboxed_sizes_scale_by_the_fitting_factor():
    record = DetectionRecord(image_path=None, boxes=np.array([[0, 0, 64, 32]], np.float32),
                             labels=np.array([0]), width=640, height=400)
    # 640x400 into 320x256: scale = min(0.5, 0.64) = 0.5
    np.testing.assert_allclose(letterboxed_sizes([record], (320, 256)), [[32.0, 16.0]])


def test_plot_anchors_writes_a_png(tmp_path):
    boxes = _clustered_boxes()
    png = tmp_path / "anchors.png"
    plot_anchors(boxes, compute_anchors(boxes, 3, (10, 8), (320, 256), 0), (10, 8), (320, 256), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
