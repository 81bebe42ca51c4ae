"""tf.data input pipeline for the detector: read, augment, letterbox, normalise, pad boxes, batch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.augment import AugmentParams, augment, letterbox
from models.data.records import DetectionRecord


def prepare_image(image: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 image as the model input: letterboxed, float32 in [0, 1], HxWx3."""
    canvas, _, _ = letterbox(image, np.zeros((0, 4), np.float32), input_size)
    return canvas.astype(np.float32) / 255.0


def prepared_sample(record: DetectionRecord, input_size: tuple[int, int], max_boxes: int,
                    rng: np.random.Generator | None, params: AugmentParams = AugmentParams()
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32 HxWx3 in [0,1], boxes float32 max_boxes x 4 normalised, labels int32 max_boxes, -1 = none)."""
    image, boxes, labels = record.load()
    if rng is not None:
        image, boxes, labels = augment(image, boxes, labels, rng, params)
    canvas, boxes, _ = letterbox(image, boxes, input_size)
    width, height = input_size
    norm = boxes / np.array([width, height, width, height], np.float32)
    out_boxes = np.zeros((max_boxes, 4), np.float32)
    out_labels = np.full((max_boxes,), -1, np.int32)
    n = min(len(norm), max_boxes)
    out_boxes[:n], out_labels[:n] = norm[:n], labels[:n]
    return canvas.astype(np.float32) / 255.0, out_boxes, out_labels


def detection_dataset(records: list[DetectionRecord], input_size: tuple[int, int], batch_size: int,
                      augment: bool, seed: int, max_boxes: int = 50, shuffle: bool | None = None,
                      drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of (images (B,H,W,3) float32, {"boxes": (B,M,4), "labels": (B,M)}); reshuffled each epoch."""
    width, height = input_size
    shuffle = augment if shuffle is None else shuffle
    indices = tf.data.Dataset.range(len(records))
    if shuffle:
        indices = indices.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    params = AugmentParams()

    def load(index: np.int64, draw: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, int(index), int(draw) & 0x7FFFFFFF]) if augment else None
        return prepared_sample(records[int(index)], input_size, max_boxes, rng, params)

    def load_tf(index: tf.Tensor, draw: tf.Tensor):
        image, boxes, labels = tf.numpy_function(load, [index, draw], [tf.float32, tf.float32, tf.int32])
        image.set_shape((height, width, 3))
        boxes.set_shape((max_boxes, 4))
        labels.set_shape((max_boxes,))
        return image, {"boxes": boxes, "labels": labels}

    dataset = tf.data.Dataset.zip(indices, draws).map(load_tf, num_parallel_calls=tf.data.AUTOTUNE,
                                                      deterministic=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
