"""The YOLOv2 loss: coordinates, objectness (rescored by the IoU of the predicted box), no-object with an ignore
threshold, and classes. Objectness and classes use cross-entropy on the logits (numerically stable) rather than
YOLOv2's squared error on probabilities; the terms and their weights are otherwise YOLOv2's."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.yolo_targets import box_iou, build_targets, corners_to_centre

MAX_LOG_SCALE = 8.0  # clip tw/th before exp so an untrained net cannot overflow the box size


def predicted_boxes(raw: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """(B, H, W, A, 5+C) logits -> (B, H, W, A, 4) normalised (cx, cy, w, h), decoded as yolo_decode does."""
    grid_h, grid_w = raw.shape[1], raw.shape[2]
    cols = tf.range(grid_w, dtype=tf.float32)[None, None, :, None]
    rows = tf.range(grid_h, dtype=tf.float32)[None, :, None, None]
    cx = (cols + tf.sigmoid(raw[..., 0])) / grid_w
    cy = (rows + tf.sigmoid(raw[..., 1])) / grid_h
    wh = tf.exp(tf.clip_by_value(raw[..., 2:4], -MAX_LOG_SCALE, MAX_LOG_SCALE)) * anchors / [grid_w, grid_h]
    return tf.concat([tf.stack([cx, cy], axis=-1), wh], axis=-1)


def loss_terms(y_true: tf.Tensor, y_pred: tf.Tensor, anchors: tf.Tensor, num_classes: int, *, coord: float = 1.0,
               obj: float = 5.0, noobj: float = 1.0, cls: float = 1.0, ignore_thresh: float = 0.6,
               rescore: bool = True) -> dict[str, tf.Tensor]:
    """Each weighted loss term per image, shape (B,): y_true (B, M, 5) packed targets, y_pred (B, H, W, A*(5+C))."""
    num_anchors = anchors.shape[0]
    raw = tf.reshape(y_pred, [-1, y_pred.shape[1], y_pred.shape[2], num_anchors, 5 + num_classes])
    target = build_targets(y_true, (raw.shape[1], raw.shape[2]), anchors, num_classes)
    mask = target["mask"]
    pred_box = predicted_boxes(raw, anchors)
    scale = 2.0 - target["box"][..., 2] * target["box"][..., 3]  # small boxes weigh more
    xy_err = tf.reduce_sum(tf.square(tf.sigmoid(raw[..., 0:2]) - target["txy"]), axis=-1)
    wh_err = tf.reduce_sum(tf.square(raw[..., 2:4] - target["twh"]), axis=-1)
    coord_term = mask * scale * (xy_err + wh_err)

    assigned_iou = tf.stop_gradient(box_iou(pred_box, target["box"]))
    obj_target = assigned_iou if rescore else tf.ones_like(assigned_iou)
    obj_logit = raw[..., 4]
    obj_term = mask * tf.nn.sigmoid_cross_entropy_with_logits(labels=obj_target, logits=obj_logit)

    gts = corners_to_centre(y_true[..., :4])[:, None, None, None, :, :]
    ious = box_iou(pred_box[..., None, :], gts) * tf.cast(y_true[..., 4] >= 0, tf.float32)[:, None, None, None, :]
    best_iou = tf.stop_gradient(_max_or_zero(ious))
    ignored = tf.cast(best_iou >= ignore_thresh, tf.float32)
    noobj_term = (1.0 - mask) * (1.0 - ignored) * tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.zeros_like(obj_logit), logits=obj_logit)

    class_term = mask * tf.nn.softmax_cross_entropy_with_logits(labels=target["onehot"], logits=raw[..., 5:])
    return {"coord": coord * _per_image(coord_term), "obj": obj * _per_image(obj_term),
            "noobj": noobj * _per_image(noobj_term), "class": cls * _per_image(class_term)}


def _per_image(term: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(term, axis=[1, 2, 3])


def _max_or_zero(ious: tf.Tensor) -> tf.Tensor:
    """Max over the last axis, 0 when it is empty (an image padded to zero boxes)."""
    return tf.reduce_max(tf.concat([ious, tf.zeros_like(ious[..., :1])], axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="facedet")
class YoloV2Loss(keras.losses.Loss):
    """Keras loss over packed targets (B, M, 5) and raw logits (B, H, W, A*(5+C)); returns the per-image sum."""

    def __init__(self, anchors: np.ndarray | list, num_classes: int, coord: float = 1.0, obj: float = 5.0,
                 noobj: float = 1.0, cls: float = 1.0, ignore_thresh: float = 0.6, rescore: bool = True,
                 name: str = "yolov2_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
        self.num_classes = num_classes
        self.term_weights = {"coord": coord, "obj": obj, "noobj": noobj, "cls": cls}
        self.ignore_thresh = ignore_thresh
        self.rescore = rescore

    def call(self, y_true, y_pred):
        terms = loss_terms(y_true, y_pred, tf.constant(self.anchors), self.num_classes, **self.term_weights,
                           ignore_thresh=self.ignore_thresh, rescore=self.rescore)
        return tf.add_n(list(terms.values()))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "anchors": self.anchors.tolist(), "num_classes": self.num_classes,
                **self.term_weights, "ignore_thresh": self.ignore_thresh, "rescore": self.rescore}
