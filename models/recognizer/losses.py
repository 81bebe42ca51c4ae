"""Training heads of the recognizer: a softmax baseline, CosFace (AM-softmax) and ArcFace margins, and the
distillation loss toward a teacher's embedding. None of them ships: the board runs the embedder alone."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from models.distribute import replica_share_of_mean
from pipeline.errors import PipelineError

LOSSES = ("softmax", "cosface", "arcface")


@keras.saving.register_keras_serializable(package="facerec")
class MarginHead(keras.layers.Layer):
    """Class logits from an embedding and its labels.

    softmax: a plain linear classifier (the baseline). cosface: s * (cos(theta) - m) for the true class, s * cos
    elsewhere. arcface: s * cos(theta + m) for the true class while theta + m < pi; past it, the usual fallback
    s * (cos(theta) - m * sin(m)), which keeps the logit decreasing in theta."""

    def __init__(self, classes: int, kind: str, scale: float, margin: float, **kwargs) -> None:
        super().__init__(**kwargs)
        if kind not in LOSSES:
            raise PipelineError(f"unknown loss {kind!r}", field="recognizer.loss",
                                expected=f"one of {', '.join(LOSSES)}")
        if kind == "arcface" and not 0 <= margin < math.pi / 2:
            raise PipelineError(f"margin {margin}", field="recognizer.margin",
                                expected="an ArcFace angular margin in [0, pi/2) radians (usually 0.5)")
        self.classes, self.kind, self.scale, self.margin = classes, kind, float(scale), float(margin)

    def build(self, input_shape) -> None:
        embedding_shape = input_shape[0] if isinstance(input_shape, list | tuple) and len(input_shape) == 2 \
            and isinstance(input_shape[0], list | tuple) else input_shape
        self.kernel = self.add_weight(shape=(int(embedding_shape[-1]), self.classes), initializer="glorot_uniform",
                                      name="class_centres")
        if self.kind == "softmax":
            self.bias = self.add_weight(shape=(self.classes,), initializer="zeros", name="bias")

    def call(self, embedding: tf.Tensor, labels: tf.Tensor, extra: tf.Tensor | None = None) -> tf.Tensor:
        """Logits; `extra` (B,) is a per-sample angular margin (radians) added to the true class's angle."""
        if self.kind == "softmax":
            return tf.matmul(embedding, self.kernel) + self.bias
        cosine = tf.matmul(tf.math.l2_normalize(embedding, axis=1), tf.math.l2_normalize(self.kernel, axis=0))
        cosine = tf.clip_by_value(cosine, -1.0 + 1e-6, 1.0 - 1e-6)
        one_hot = tf.one_hot(tf.maximum(labels, 0), self.classes, dtype=cosine.dtype)
        if extra is not None:
            target = self._target_with_extra(cosine, extra[:, None])
        elif self.kind == "cosface":
            target = cosine - self.margin
        else:
            sine = tf.sqrt(1.0 - tf.square(cosine))
            with_margin = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
            target = tf.where(cosine > math.cos(math.pi - self.margin), with_margin,
                              cosine - self.margin * math.sin(self.margin))
        return self.scale * (one_hot * target + (1.0 - one_hot) * cosine)

    def _target_with_extra(self, cosine: tf.Tensor, extra: tf.Tensor) -> tf.Tensor:
        """The true-class term with `extra` radians added to the angle (capped at pi): cosface cos(theta + extra) - m,
        arcface cos(theta + m + extra) with its usual fallback past pi, for the margin m + extra."""
        theta = tf.acos(cosine)
        if self.kind == "cosface":
            return tf.cos(tf.minimum(theta + extra, math.pi)) - self.margin
        total = self.margin + extra
        return tf.where(theta + total < math.pi, tf.cos(theta + total), cosine - total * tf.sin(total))

    def get_config(self) -> dict:
        return {**super().get_config(), "classes": self.classes, "kind": self.kind, "scale": self.scale,
                "margin": self.margin}


def classification_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the labelled samples (label >= 0); 0 when a batch has none. Under a distribution
    strategy with N > 1 replicas: this replica's share of the mean over the labelled samples of the global batch."""
    labelled = tf.cast(labels >= 0, logits.dtype)
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), logits)
    return replica_share_of_mean(tf.reduce_sum(per_sample * labelled), tf.reduce_sum(labelled))


def centred_units(embeddings: tf.Tensor, centre: tf.Tensor | None = None) -> tf.Tensor:
    """(N, D) embeddings as the runtimes normalise them (models/recognizer/centre.py): L2-normalised, and with a
    centre, minus it and L2-normalised again."""
    unit = tf.math.l2_normalize(embeddings, axis=1)
    return unit if centre is None else tf.math.l2_normalize(unit - centre, axis=1)


def distillation_loss(student: tf.Tensor, teacher: tf.Tensor, has_teacher: tf.Tensor,
                      centre: tf.Tensor | None = None) -> tf.Tensor:
    """Mean (1 - cosine) between the student's and the teacher's embeddings (both centred by `centre` when given)
    over samples that have one (under N > 1 replicas: this replica's share of that mean over the global batch)."""
    cosine = tf.reduce_sum(centred_units(student, centre) * centred_units(teacher, centre), axis=1)
    weight = tf.cast(has_teacher, student.dtype)
    return replica_share_of_mean(tf.reduce_sum((1.0 - cosine) * weight), tf.reduce_sum(weight))
