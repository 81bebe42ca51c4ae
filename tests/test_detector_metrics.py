"""VOC / COCO AP and recall by size on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import ImageResult, ap_coco_101, ap_voc, evaluate_results, pairwise_iou, pr_curve, recall_by_size


def _image(dets, gts) -> ImageResult:
    boxes = np.array([d[0] for d in dets], np.float64).reshape(-1, 4)
    return ImageResult(boxes, np.array([d[1] for d in dets]), np.array([d[2] for d in dets], int),
                       np.array([g[0] for g in gts], np.float64).reshape(-1, 4), np.array([g[1] for g in gts], int))


A, B = (0, 0, 10, 10), (20, 20, 30, 30)
FAR = (50, 50, 60, 60)
# two faces; detections by score: hit A (0.9), miss (0.8), hit B (0.7)
THREE = [_image([(A, 0.9, 0), (FAR, 0.8, 0), (B, 0.7, 0)], [(A, 0), (B, 0)])]


def test_pairwise_iou():
    np.testing.assert_allclose(pairwise_iou([A], [(5, 0, 15, 10), B]), [[50 / 150, 0.0]])


def test_voc_all_point_ap_hand_computed():
    curve = pr_curve(THREE, 0, 0.5)
    np.testing.assert_allclose(curve.precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(curve.recall, [0.5, 0.5, 1.0])
    assert ap_voc(curve) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_coco_101_point_ap_hand_computed():
    # recall points 0..0.50 (51 of them) see precision 1, 0.51..1.00 (50) see the envelope 2/3
    assert ap_coco_101(pr_curve(THREE, 0, 0.5)) == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_duplicates_and_wrong_class_are_false_positives():
    results = [_image([(A, 0.9, 0), (A, 0.8, 0), (B, 0.95, 1)], [(A, 0), (B, 0)])]
    curve = pr_curve(results, 0, 0.5)
    np.testing.assert_allclose(curve.precision, [1.0, 0.5])
    assert ap_voc(curve) == pytest.approx(0.5)


def test_perfect_and_empty_detections():
    perfect = [_image([(A, 0.9, 0), (B, 0.8, 0)], [(A, 0), (B, 0)])]
    report = evaluate_results(perfect, ["face"], score_threshold=0.5)
    assert report["ap50"] == pytest.approx(1.0) and report["ap50_95"] == pytest.approx(1.0)
    assert evaluate_results([_image([], [(A, 0)])], ["face"], 0.5)["ap50"] == 0.0


def test_ap50_95_averages_over_iou_thresholds():
    shifted = (0, 0, 10, 8)  # IoU 0.8 with A: a hit at 0.5 ... 0.8, a miss at 0.85 ... 0.95
    report = evaluate_results([_image([(shifted, 0.9, 0)], [(A, 0)])], ["face"], 0.5)
    assert report["ap50"] == pytest.approx(1.0)
    assert report["ap50_95"] == pytest.approx(7 / 10)


def test_recall_by_size_counts_each_bucket_at_the_score_threshold():
    small, large = (0, 0, 8, 8), (100, 100, 200, 200)
    results = [_image([(small, 0.9, 0), (large, 0.3, 0)], [(small, 0), (large, 0), ((40, 40, 60, 60), 0)])]
    by_size = recall_by_size(results, score_threshold=0.5)
    assert by_size["0-16px"] == {"faces": 1, "recall": 1.0}
    assert by_size["16-32px"] == {"faces": 1, "recall": 0.0}
    assert by_size[">=64px"] == {"faces": 1, "recall": 0.0}
    assert by_size["all"]["recall"] == pytest.approx(1 / 3)
