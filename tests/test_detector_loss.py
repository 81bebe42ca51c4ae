"""YOLOv2 targets and loss on hand-computed cases: a 2x2 grid, anchors (1,1) and (2,2), two classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from models.yolo_loss import YoloV2Loss, loss_terms
from models.yolo_targets import build_targets, pack_targets

ANCHORS = tf.constant([[1.0, 1.0], [2.0, 2.0]])
LN2 = math.log(2.0)
# one face, label 1, centre (0.75, 0.25), size 0.5 x 0.5 = 1 x 1 cells -> cell row 0 col 1, anchor 0
ONE_BOX = pack_targets(tf.constant([[[0.5, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0]]]), tf.constant([[1, -1]]))


def _pred(**slot_logits: float) -> tf.Tensor:
    """All-zero logits (B=1, 2, 2, 2*(5+2)) except the named entries of the assigned slot (row 0, col 1, anchor 0)."""
    pred = np.zeros((1, 2, 2, 14), np.float32)
    names = {"tx": 0, "ty": 1, "tw": 2, "th": 3, "obj": 4}
    for name, value in slot_logits.items():
        pred[0, 0, 1, names[name]] = value
    return tf.constant(pred)


def _terms(pred: tf.Tensor, y_true: tf.Tensor = ONE_BOX, **kwargs) -> dict[str, float]:
    return {k: float(v[0]) for k, v in loss_terms(y_true, pred, ANCHORS, 2, **kwargs).items()}


def test_targets_put_the_box_in_its_centre_cell_and_best_anchor():
    target = build_targets(ONE_BOX, (2, 2), ANCHORS, 2)
    mask = target["mask"].numpy()
    assert mask.sum() == 1 and mask[0, 0, 1, 0] == 1
    np.testing.assert_allclose(target["txy"][0, 0, 1, 0], [0.5, 0.5])
    np.testing.assert_allclose(target["twh"][0, 0, 1, 0], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(target["onehot"][0, 0, 1, 0], [0.0, 1.0])
    big = pack_targets(tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), tf.constant([[0]]))  # 2x2 cells -> anchor 1, cell (1,1)
    assert build_targets(big, (2, 2), ANCHORS, 2)["mask"].numpy()[0, 1, 1, 1] == 1


def test_zero_logits_on_a_perfect_box_cost_only_the_cross_entropies():
    # the zero-logit prediction of the assigned slot is exactly the box (IoU 1): coord 0, obj 5 * BCE(1, 0.5),
    # class CE(0.5, 0.5) = ln 2; the 7 other slots overlap the box with IoU <= 0.25, each costs BCE(0, 0.5) = ln 2
    terms = _terms(_pred())
    assert terms == pytest.approx({"coord": 0.0, "obj": 5 * LN2, "noobj": 7 * LN2, "class": LN2}, abs=1e-5)


def test_ignore_threshold_spares_overlapping_unassigned_slots():
    # anchor 1 of the same cell predicts a 1x1 box holding the 0.5x0.5 face: IoU 0.25, ignored at threshold 0.2
    assert _terms(_pred(), ignore_thresh=0.2)["noobj"] == pytest.approx(6 * LN2, abs=1e-5)


def test_coordinate_error_and_rescored_objectness():
    # tw = ln 2: width error (ln 2)^2 weighted by 2 - w*h = 1.75; the box doubles in width -> IoU 0.5
    # objectness logit ln 3 -> p = 0.75; rescored target 0.5
    terms = _terms(_pred(tw=LN2, obj=math.log(3.0)))
    assert terms["coord"] == pytest.approx(1.75 * LN2**2, abs=1e-5)
    assert terms["obj"] == pytest.approx(5 * -(0.5 * math.log(0.75) + 0.5 * math.log(0.25)), abs=1e-5)
    plain = _terms(_pred(tw=LN2, obj=math.log(3.0)), rescore=False)
    assert plain["obj"] == pytest.approx(5 * -math.log(0.75), abs=1e-5)


def test_padding_rows_and_empty_images_add_no_object_terms():
    y_true = pack_targets(tf.constant([[[0.5, 0.0, 1.0, 0.5], [0.1, 0.1, 0.9, 0.9]], [[0.2, 0.2, 0.4, 0.4]] * 2]),
                          tf.constant([[1, -1], [-1, -1]]))
    pred = tf.concat([_pred(), _pred()], axis=0)
    loss = YoloV2Loss(ANCHORS.numpy(), 2, reduction=None)(y_true, pred).numpy()
    assert loss == pytest.approx([13 * LN2, 8 * LN2], abs=1e-4)


def test_gradient_steps_reduce_the_loss():
    pred = tf.Variable(tf.random.stateless_normal((1, 2, 2, 14), seed=(1, 2)))
    loss_fn = YoloV2Loss(ANCHORS.numpy(), 2)
    losses = []
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = loss_fn(ONE_BOX, pred)
        pred.assign_sub(0.1 * tape.gradient(loss, pred))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_loss_config_round_trips():
    loss = YoloV2Loss([[1, 2], [3, 4]], 3, obj=2.0, ignore_thresh=0.5)
    again = YoloV2Loss.from_config(loss.get_config())
    assert again.anchors.tolist() == [[1, 2], [3, 4]] and again.term_weights["obj"] == 2.0
