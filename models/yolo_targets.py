"""YOLOv2 training targets as TF graph ops: each ground-truth box goes to the cell holding its centre and the anchor
whose shape overlaps it best. Boxes come packed as (B, M, 5) = [x1, y1, x2, y2, label] normalised, label -1 = pad."""

from __future__ import annotations

import tensorflow as tf


def pack_targets(boxes: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """(B, M, 4) boxes and (B, M) labels -> one (B, M, 5) float32 tensor, the `y_true` Keras hands to the loss."""
    return tf.concat([tf.cast(boxes, tf.float32), tf.cast(labels, tf.float32)[..., None]], axis=-1)


def corners_to_centre(boxes: tf.Tensor) -> tf.Tensor:
    """[..., x1, y1, x2, y2] -> [..., cx, cy, w, h]."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def box_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of broadcastable [..., cx, cy, w, h] boxes."""
    a_min, a_max = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b_min, b_max = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    overlap = tf.maximum(tf.minimum(a_max, b_max) - tf.maximum(a_min, b_min), 0.0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return tf.math.divide_no_nan(inter, union)


def best_anchor(wh_cells: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Index of the anchor whose shape (both centred) has the highest IoU with each box's (w, h) in grid cells."""
    wh = wh_cells[..., None, :]
    inter = tf.reduce_prod(tf.minimum(wh, anchors), axis=-1)
    union = tf.reduce_prod(wh, axis=-1) + tf.reduce_prod(anchors, axis=-1) - inter
    return tf.argmax(tf.math.divide_no_nan(inter, union), axis=-1, output_type=tf.int32)


def build_targets(y_true: tf.Tensor, grid_hw: tuple[int, int], anchors: tf.Tensor,
                  num_classes: int) -> dict[str, tf.Tensor]:
    """Per (B, H, W, A) slot: `mask` 1 where a box is assigned, `txy` centre offset in the cell, `twh` log size
    ratio to the anchor, `box` the assigned normalised (cx, cy, w, h), `onehot` the class. Boxes sharing a slot: one
    of them holds it."""
    grid_h, grid_w = grid_hw
    num_anchors = anchors.shape[0]
    valid = y_true[..., 4] >= 0
    centre = corners_to_centre(y_true[..., :4])
    size = tf.constant([grid_w, grid_h], tf.float32)
    xy_cells = centre[..., :2] * size
    wh_cells = tf.maximum(centre[..., 2:] * size, 1e-6)
    col = tf.clip_by_value(tf.cast(tf.floor(xy_cells[..., 0]), tf.int32), 0, grid_w - 1)
    row = tf.clip_by_value(tf.cast(tf.floor(xy_cells[..., 1]), tf.int32), 0, grid_h - 1)
    anchor = best_anchor(wh_cells, anchors)
    batch = tf.broadcast_to(tf.range(tf.shape(y_true)[0])[:, None], tf.shape(row))
    index = tf.boolean_mask(tf.stack([batch, row, col, anchor], axis=-1), valid)
    cell = tf.stack([tf.cast(col, tf.float32), tf.cast(row, tf.float32)], axis=-1)
    values = tf.concat([
        tf.ones_like(centre[..., :1]),
        xy_cells - cell,
        tf.math.log(wh_cells / tf.gather(anchors, anchor)),
        centre,
        tf.one_hot(tf.cast(tf.maximum(y_true[..., 4], 0), tf.int32), num_classes),
    ], axis=-1)
    shape = tf.stack([tf.shape(y_true)[0], grid_h, grid_w, num_anchors, 9 + num_classes])
    # update (not add) semantics: when two boxes share a slot, one of them holds it whole
    dense = tf.tensor_scatter_nd_update(tf.zeros(shape), index, tf.boolean_mask(values, valid))
    return {"mask": dense[..., 0], "txy": dense[..., 1:3], "twh": dense[..., 3:5], "box": dense[..., 5:9],
            "onehot": dense[..., 9:]}
