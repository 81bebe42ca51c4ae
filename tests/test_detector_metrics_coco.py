"""models/metrics.py against pycocotools (the COCO reference implementation) on the face-mask val set: AP@[.5:.95]
and AP@0.5 (COCO 101-point) agree within COCO_TOLERANCE for (a) the trained detector's recorded val predictions and
(b) seeded noisy predictions around the ground truth (misses, duplicates, false positives, every IoU level)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from models.data import load_records
from models.metrics import ImageResult, evaluate_results
from pipeline.config import REPO_ROOT, load_config
from tests.conftest import shared_path

# Differences can only come from ties (equal scores, or a detection equally close to two faces), which the two
# implementations break differently; the seeded scores here are all distinct.
COCO_TOLERANCE = 1e-6
RECORDED = Path(__file__).parent / "data" / "facemask_val_detections.json"


@pytest.fixture(scope="module")
def val_records():
    shared_path("facemask", "val")
    return load_records(load_config(REPO_ROOT / "configs" / "facemask.yaml"), "val")


def coco_ap(results: list[ImageResult]) -> tuple[float, float]:
    """(AP@[.5:.95], AP@0.5) of pycocotools' COCOeval on the same boxes (one class, no crowd, no detection cap)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: np.ndarray) -> list[float]:
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]

    images, annotations, detections = [], [], []
    for image_id, result in enumerate(results, start=1):
        images.append({"id": image_id})
        for box in result.gt_boxes:  # ids start at 1: COCOeval takes id 0 for "unmatched"
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "bbox": xywh(box), "area": float((box[2] - box[0]) * (box[3] - box[1]))})
        detections += [{"image_id": image_id, "category_id": 1, "bbox": xywh(box), "score": float(score)}
                       for box, score in zip(result.boxes, result.scores, strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.params.maxDets = [1, 10, max(len(r.scores) for r in results)]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, 0, -1]  # IoU threshold x recall point, area "all", no cap
    return float(precision.mean()), float(precision[0].mean())


def ours(results: list[ImageResult]) -> tuple[float, float]:
    report = evaluate_results(results, ["face"], 0.5)
    return report["ap50_95"], report["ap50_coco"]


def noisy_predictions(records, rng: np.random.Generator) -> list[ImageResult]:
    """Per face: found with probability 0.85 (box corners moved by up to a fifth of its size), sometimes twice; per
    image a few boxes anywhere; scores uniform, so every IoU level and ranking occurs."""
    results = []
    for record in records:
        boxes = []
        for box in record.boxes:
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            for _ in range(int(rng.random() < 0.85) + int(rng.random() < 0.2)):
                boxes.append(box + rng.uniform(-0.2, 0.2, 4) * size)
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, [record.width - 20, record.height - 20])
            boxes.append(np.array([x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)]))
        boxes = np.array(boxes, np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        results.append(ImageResult(boxes, rng.random(len(boxes)), np.zeros(len(boxes), np.int64),
                                   record.boxes.astype(np.float64), record.labels.astype(np.int64)))
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_agrees_with_pycocotools_on_noisy_predictions(val_records, seed):
    results = noisy_predictions(val_records, np.random.default_rng(seed))
    mine, reference = ours(results), coco_ap(results)
    assert 0.05 < reference[0] < 0.95  # neither trivial nor perfect
    np.testing.assert_allclose(mine, reference, atol=COCO_TOLERANCE)


def test_ap_agrees_with_pycocotools_on_the_detectors_recorded_predictions(val_records):
    """tests/data/facemask_val_detections.json: the trained face-mask detector's val detections (Keras, decoded and
    NMS'd as `invoke eval` does, score >= 0.01, at most 100 per image), in source-image pixels."""
    recorded = json.loads(RECORDED.read_text())
    by_name = {entry["image"]: entry for entry in recorded["images"]}
    assert sorted(by_name) == sorted(r.image_path.name for r in val_records)
    results = []
    for record in val_records:
        entry = by_name[record.image_path.name]
        boxes = np.array(entry["boxes"], np.float64).reshape(-1, 4)
        results.append(ImageResult(boxes, np.array(entry["scores"]), np.zeros(len(boxes), np.int64),
                                   record.boxes.astype(np.float64), record.labels.astype(np.int64)))
    mine, reference = ours(results), coco_ap(results)
    assert reference[1] > 0.3  # a working detector
    np.testing.assert_allclose(mine, reference, atol=COCO_TOLERANCE)
