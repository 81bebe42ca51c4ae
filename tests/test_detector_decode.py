"""YOLOv2 decoding and NMS: hand-computed grids, and the nncase VOC example's golden output decoded as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.yolo_decode import Detection, box_iou, chw_to_hwc, decode_yolov2, nms
from pipeline.errors import PipelineError
from tests.conftest import shared_path

NEG = -30.0  # sigmoid(-30) ~ 1e-13: a cell with no object


def _grid(height: int, width: int, anchors: int, classes: int) -> np.ndarray:
    grid = np.zeros((height, width, anchors * (5 + classes)), dtype=np.float32)
    grid[..., 4 :: 5 + classes] = NEG
    return grid


def test_one_cell_hand_computed_box_and_scores():
    grid = _grid(2, 2, 1, 2)
    # row 1, col 0: tx = ty = 0 -> centre (0.25, 0.75); tw = th = ln 2 with anchor (1, 0.5) -> size (1.0, 0.5)
    grid[1, 0, :] = [0.0, 0.0, math.log(2.0), math.log(2.0), 0.0, math.log(3.0), 0.0]
    dets = decode_yolov2(grid, np.array([[1.0, 0.5]]), num_classes=2, score_threshold=0.1)
    assert [d.class_id for d in dets] == [0, 1]
    # objectness sigmoid(0) = 0.5, softmax(ln 3, 0) = (0.75, 0.25)
    assert dets[0].score == pytest.approx(0.375, abs=1e-6)
    assert dets[1].score == pytest.approx(0.125, abs=1e-6)
    assert dets[0].box == pytest.approx((-0.25, 0.5, 0.75, 1.0), abs=1e-6)


def test_threshold_is_strict():
    grid = _grid(1, 1, 1, 2)
    grid[0, 0, 4] = 0.0  # objectness 0.5, classes (0.5, 0.5): both scores exactly 0.25
    anchors = np.array([[1.0, 1.0]])
    assert decode_yolov2(grid, anchors, 2, score_threshold=0.25) == []
    assert len(decode_yolov2(grid, anchors, 2, score_threshold=0.2499)) == 2


def test_detections_come_out_in_row_col_anchor_order():
    grid = _grid(2, 3, 2, 1)
    stride = 6
    for row, col, anchor, logit in [(1, 2, 0, 1.0), (0, 1, 1, 2.0), (0, 1, 0, 3.0), (1, 0, 1, 4.0)]:
        grid[row, col, anchor * stride + 4] = logit
    dets = decode_yolov2(grid, np.array([[1.0, 1.0], [2.0, 2.0]]), 1, 0.5)
    expected_logits = [3.0, 2.0, 4.0, 1.0]  # (0,1,a0), (0,1,a1), (1,0,a1), (1,2,a0)
    assert [d.score for d in dets] == pytest.approx([1 / (1 + math.exp(-x)) for x in expected_logits], abs=1e-6)
    centres_x = [(d.box[0] + d.box[2]) / 2 for d in dets]
    assert centres_x == pytest.approx([1.5 / 3, 1.5 / 3, 0.5 / 3, 2.5 / 3], abs=1e-6)


def test_wrong_channel_count_is_refused():
    with pytest.raises(PipelineError, match=r"\(H, W, 12\)"):
        decode_yolov2(np.zeros((2, 2, 13), np.float32), np.ones((2, 2)), 1, 0.5)


def test_box_iou_hand_values():
    assert box_iou((0, 0, 1, 1), (0, 0.5, 1, 1.5)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_nms_is_greedy_per_class():
    a = Detection((0, 0, 1, 1), 0.9, 0)
    b = Detection((0, 0.5, 1, 1.5), 0.8, 0)  # IoU with a = 1/3
    c = Detection((0, 0.5, 1, 1.5), 0.7, 1)  # same box, other class: never suppressed by a or b
    d = Detection((0, 0.6, 1, 1.6), 0.6, 0)  # IoU with b = 0.9 / 1.1, with a = 0.4 / 1.6 = 0.25
    assert nms([d, c, b, a], 0.3) == [a, c, d]
    assert nms([d, c, b, a], 0.5) == [a, b, c]


def test_nms_ties_keep_decode_order():
    first = Detection((0, 0, 1, 1), 0.5, 0)
    second = Detection((0, 0, 1, 1), 0.5, 0)
    assert nms([first, second], 0.5)[0] is first


def test_chw_to_hwc_matches_the_kmodel_index_formula():
    flat = np.arange(125 * 7 * 10, dtype=np.float32)
    hwc = chw_to_hwc(flat, 125, 7, 10)
    a, e, row, col = 3, 7, 5, 9
    assert hwc[row, col, a * 25 + e] == flat[(a * 25 + e) * 70 + row * 10 + col]
    with pytest.raises(PipelineError, match="8750"):
        chw_to_hwc(flat[:-1], 125, 7, 10)


def test_nncase_voc_golden_output_decodes_to_the_documented_detections():
    flat = np.load(shared_path("kmodels", "voc20_dog_expected_output.npy"))
    anchors = np.array([1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52]).reshape(5, 2)
    dets = decode_yolov2(chw_to_hwc(flat, 125, 7, 10), anchors, 20, 0.5)
    table = sorted((d.class_id, round(d.score, 3), round((d.box[0] + d.box[2]) / 2 * 320),
                    round((d.box[1] + d.box[3]) / 2 * 240), round((d.box[2] - d.box[0]) * 320),
                    round((d.box[3] - d.box[1]) * 240)) for d in dets)
    # the README's table: bicycle 1, car 6, dog 11; centre and size in pixels of the 320x240 input
    assert table == [(1, 0.929, 144, 122, 161, 122), (1, 0.967, 146, 121, 219, 159),
                     (6, 0.502, 240, 58, 56, 42), (6, 0.747, 208, 57, 54, 41), (11, 0.595, 85, 154, 92, 155)]
    kept = nms(dets, 0.2)
    assert [(d.class_id, round(d.score, 3)) for d in kept] == [(1, 0.967), (6, 0.747), (11, 0.595)]
