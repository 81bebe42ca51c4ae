"""Knowledge distillation for fine-tuning a pruned detector: the unpruned model's head outputs are soft targets.

The trained network sees the same augmented batch twice, through the pruned student and the frozen teacher; their
raw (B, H, W, A*(5+C)) outputs are concatenated so a Keras loss sees both. The distillation term matches what the
decoder uses, per anchor: the objectness sigmoid everywhere, and sigmoid(tx, ty), the raw tw, th and the class
softmax weighted by the teacher's objectness (objectness-scaled distillation, Mehta & Ozturk 2018: the boxes of
background anchors are never decoded, so their values are noise to copy), as squared errors summed per image like the
YOLOv2 loss terms, scaled by `prune.distill`."""

from __future__ import annotations

import keras
import tensorflow as tf

from models.yolo_loss import YoloV2Loss


def soft_view(raw: tf.Tensor, num_anchors: int, num_classes: int) -> tf.Tensor:
    """(B, H, W, A*(5+C)) logits -> (B, H, W, A, 5+C) as the decoder reads them: sigmoid xy, raw wh, sigmoid
    objectness, softmax classes."""
    shape = tf.shape(raw)
    per_anchor = tf.reshape(raw, [shape[0], shape[1], shape[2], num_anchors, 5 + num_classes])
    parts = [tf.sigmoid(per_anchor[..., 0:2]), per_anchor[..., 2:4], tf.sigmoid(per_anchor[..., 4:5])]
    if num_classes > 1:
        parts.append(tf.nn.softmax(per_anchor[..., 5:], axis=-1))
    return tf.concat(parts, axis=-1)


class DistilledLoss(keras.losses.Loss):
    """The detector loss on the student half of y_pred plus `weight` x the squared error to the teacher half."""

    def __init__(self, detector: YoloV2Loss, weight: float, name: str = "distilled_yolo") -> None:
        super().__init__(name=name)
        self.detector, self.weight = detector, float(weight)
        self.num_anchors, self.num_classes = len(detector.anchors), detector.num_classes

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        student, teacher = tf.split(y_pred, 2, axis=-1)
        soft_teacher = soft_view(tf.stop_gradient(teacher), self.num_anchors, self.num_classes)
        squared = tf.square(soft_view(student, self.num_anchors, self.num_classes) - soft_teacher)
        objectness = soft_teacher[..., 4:5]
        weights = tf.concat([tf.repeat(objectness, 4, axis=-1), tf.ones_like(objectness),
                             tf.repeat(objectness, squared.shape[-1] - 5, axis=-1)], axis=-1)
        distill = tf.reduce_sum(weights * squared, axis=[1, 2, 3, 4])
        return self.detector.call(y_true, student) + self.weight * distill


def with_teacher(student: keras.Model, teacher: keras.Model) -> keras.Model:
    """A model whose output is [student(x), teacher(x)] on the last axis; only the student's weights train (the
    teacher is frozen, so its batch norms run in inference mode)."""
    teacher.trainable = False
    frozen = keras.Model(teacher.inputs, teacher.outputs[0], name="teacher")  # the student may share its name
    inputs = keras.Input(shape=student.input_shape[1:], name="distill_input")
    both = keras.layers.Concatenate(axis=-1, name="student_teacher")([student(inputs), frozen(inputs)])
    return keras.Model(inputs, both, name=f"{student.name}_distilled")
