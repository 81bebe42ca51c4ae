"""Targets, decoding and evaluation agree: logits written from the training targets decode back to the boxes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.augment import Letterbox
from models.evaluate import EvalSet, collect_results, collect_source_results, detect
from models.metrics import evaluate_results
from models.yolo_targets import build_targets, pack_targets

ANCHORS = np.array([[0.5, 0.5], [1.0, 1.2], [2.5, 2.0]], np.float32)
INPUT = (320, 256)
GRID = (8, 10)  # rows, cols


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _perfect_outputs(boxes_norm: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The raw output a perfect detector would give: the training targets written back as logits."""
    target = build_targets(pack_targets(tf.constant(boxes_norm[None]), tf.constant(labels[None])), GRID,
                           tf.constant(ANCHORS), num_classes)
    mask = target["mask"].numpy()[0]
    out = np.zeros((*GRID, len(ANCHORS), 5 + num_classes), np.float32)
    out[..., 0:2] = _logit(target["txy"].numpy()[0])
    out[..., 2:4] = target["twh"].numpy()[0]
    out[..., 4] = np.where(mask > 0, 12.0, -12.0)
    out[..., 5:] = target["onehot"].numpy()[0] * 12.0
    return out.reshape(*GRID, -1)


def test_target_logits_decode_back_to_the_ground_truth_boxes():
    boxes = np.array([[0.10, 0.20, 0.18, 0.31], [0.5, 0.5, 0.9, 0.95], [0.62, 0.05, 0.70, 0.12]], np.float32)
    labels = np.array([0, 1, 1], np.int32)
    raw = _perfect_outputs(boxes, labels, 2)
    found, scores, classes = detect(raw, ANCHORS, 2, INPUT, score_threshold=0.5, nms_iou=0.45)
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], boxes * np.array([*INPUT, *INPUT]), atol=0.05)
    assert classes[order].tolist() == [0, 1, 1] and np.all(scores > 0.99)


def test_collect_results_gives_ap_one_for_a_perfect_predictor():
    rng = np.random.default_rng(0)
    gts, outputs = [], []
    for _ in range(4):
        xy = rng.uniform(0.05, 0.6, size=(3, 2))
        wh = rng.uniform(0.05, 0.3, size=(3, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        gts.append(boxes)
        outputs.append(_perfect_outputs(boxes, np.zeros(3, np.int32), 1))
    scale = np.array([*INPUT, *INPUT], np.float32)
    data = EvalSet(np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 2, 2, 3), np.float32),
                   [g * scale for g in gts], [np.zeros(3, np.int64)] * 4)
    predictor = lambda images: np.stack([outputs[int(i)] for i in images[:, 0, 0, 0]])  # noqa: E731
    results = collect_results(predictor, data, ANCHORS, 1, INPUT, nms_iou=0.45, batch_size=3)
    assert len(results) == 4
    report = evaluate_results(results, ["face"], score_threshold=0.5)
    assert report["ap50"] == pytest.approx(1.0)
    assert report["recall_by_size"]["all"] == {"faces": 12, "recall": 1.0}


def test_a_runtime_with_its_own_letterbox_is_scored_against_the_same_ground_truth():
    """A source predictor places each image its own way (here 4 px lower, scaled differently): its detections are
    moved to the training letterbox's coordinates, so a perfect one still scores AP 1 on the shared ground truth."""
    rng = np.random.default_rng(1)
    sources = [np.zeros((200, 300, 3), np.uint8), np.zeros((250, 180, 3), np.uint8)]
    training = [Letterbox(320 / 300, 213 / 200, 0, 21), Letterbox(183 / 180, 256 / 250, 68, 0)]
    own = [Letterbox(1.0, 1.0, 10, 30), Letterbox(0.9, 0.95, 40, 4)]
    source_gt = []
    for source in sources:
        xy = rng.uniform(0.1, 0.5, size=(2, 2)) * source.shape[1::-1]
        source_gt.append(np.concatenate([xy, xy + rng.uniform(20, 60, size=(2, 2))], axis=1).astype(np.float32))
    scale = np.array([*INPUT, *INPUT], np.float32)
    gt_boxes = [p.to_input(g) for p, g in zip(training, source_gt, strict=True)]
    data = EvalSet(np.zeros((2, 2, 2, 3), np.float32), gt_boxes, [np.zeros(2, np.int64)] * 2, sources, training)
    by_shape = {s.shape: (_perfect_outputs(p.to_input(g) / scale, np.zeros(2, np.int32), 1), p)
                for s, p, g in zip(sources, own, source_gt, strict=True)}
    results = collect_source_results(lambda batch: [by_shape[s.shape] for s in batch], data, ANCHORS, 1, INPUT,
                                     nms_iou=0.45)
    for result, gt in zip(results, data.gt_boxes, strict=True):
        found = result.boxes[np.argsort(result.boxes[:, 0])]
        np.testing.assert_allclose(found, gt[np.argsort(gt[:, 0])], atol=0.1)
    assert evaluate_results(results, ["face"], 0.5)["ap50"] == pytest.approx(1.0)
