"""The rotation-consistent margin (RCM) for quantization-aware training of the recognizer (issue #14).

Per labelled training crop, the angle between the quantized model's embedding q_i and the float model's f_i splits
into the class part, the angle between the class's mean embedding in the two models (a rotation the whole class
shares), and the individual remainder max(0, angle(q_i, f_i) - angle(Q_y, F_y)). The remainder is added as an extra
angular margin on the true class in the recognizer's CosFace / ArcFace loss over the training identities, so the
samples that quantization moves away from their class more than the class itself moved are pushed hardest.

The margin head is not saved with the embedder, so the class centres are re-made from the float model: the mean of
its normalised embeddings of each identity's policy crops (the centred windows of the training crops). The quantized
model's class means start the same way from the fake-quantised model and follow it as a running mean over the
batches. The float model's embedding of the same jittered crop is also a distillation target (weight
quantize.qat_distill_weight)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.data.problems import ProblemLog
from models.recognizer.augment import centre_windows, training_batches
from models.recognizer.losses import MarginHead, classification_loss, distillation_loss
from models.recognizer.settings import RecognizerSettings
from models.recognizer.train import embed, training_crops
from pipeline.config import Config

MEAN_MOMENTUM = 0.9  # a class's running mean keeps this share each time the class appears in a batch
COSINE_LIMIT = 1.0 - 1e-6


def angles(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Row-wise angle (radians) between two sets of vectors."""
    cosine = tf.reduce_sum(tf.math.l2_normalize(a, axis=1) * tf.math.l2_normalize(b, axis=1), axis=1)
    return tf.acos(tf.clip_by_value(cosine, -COSINE_LIMIT, COSINE_LIMIT))


def individual_margins(quantized: tf.Tensor, full: tf.Tensor, labels: tf.Tensor, quantized_means: tf.Tensor,
                       full_means: tf.Tensor) -> tf.Tensor:
    """(B,) the individual part of each sample's quantization angle: angle(q_i, f_i) minus its class's angle
    angle(Q_y, F_y) between the class means (rows of the (C, D) means), floored at 0; 0 for unlabelled (-1)."""
    own = tf.maximum(labels, 0)
    class_part = angles(tf.gather(quantized_means, own), tf.gather(full_means, own))
    remainder = tf.nn.relu(angles(quantized, full) - class_part)
    return tf.where(labels >= 0, remainder, tf.zeros_like(remainder))


def updated_means(means: tf.Tensor, embeddings: tf.Tensor, labels: tf.Tensor,
                  momentum: float = MEAN_MOMENTUM) -> tf.Tensor:
    """Running unit class means: every class with samples in the batch moves to momentum * old + (1 - momentum) *
    the direction of its samples' normalised sum, renormalised; the others stay."""
    labelled = labels >= 0
    sums = tf.math.unsorted_segment_sum(tf.boolean_mask(tf.math.l2_normalize(embeddings, axis=1), labelled),
                                        tf.boolean_mask(labels, labelled), tf.shape(means)[0])
    seen = tf.reduce_sum(tf.square(sums), axis=1, keepdims=True) > 0
    moved = tf.math.l2_normalize(momentum * means + (1.0 - momentum) * tf.math.l2_normalize(sums, axis=1), axis=1)
    return tf.where(seen, moved, means)


def class_means(model: keras.Model, wide: np.ndarray, labels: np.ndarray, classes: int, size: int,
                chunk: int = 256) -> np.ndarray:
    """(C, D) unit mean of each class's normalised embeddings of the centred policy windows of its wide training
    crops (labels >= 0 only)."""
    labelled = np.flatnonzero(labels >= 0)
    parts = [embed(model, centre_windows(wide[labelled[i:i + chunk]], size)) for i in range(0, len(labelled), chunk)]
    embedded = np.concatenate(parts).astype(np.float64)
    sums = np.zeros((classes, embedded.shape[1]), np.float64)
    np.add.at(sums, labels[labelled], embedded)
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class RcmTrainer(keras.Model):
    """Fine-tunes the quantized `student` on the margin loss with the RCM extra margin (the head's centres are the
    float model's class means, fixed) plus distill_weight x (1 - cosine) to the frozen float `teacher`."""

    def __init__(self, student: keras.Model, teacher: keras.Model, head: MarginHead, student_means: np.ndarray,
                 teacher_means: np.ndarray, distill_weight: float) -> None:
        super().__init__()
        self.student, self.teacher, self.head = student, teacher, head
        self.teacher.trainable = False
        self.head.trainable = False
        self.student_means = tf.Variable(student_means, trainable=False, name="student_means")
        self.teacher_means = tf.constant(teacher_means)
        self.distill_weight = float(distill_weight)
        self.tracked = {name: keras.metrics.Mean(name=name)
                        for name in ("loss", "class_loss", "distill_loss", "individual_margin")}

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(images, training=training)

    @property
    def metrics(self) -> list:
        return list(self.tracked.values())

    def train_step(self, batch: dict) -> dict:
        labels = batch["label"]
        target = self.teacher(batch["image"], training=False)
        with tf.GradientTape() as tape:
            embedding = self.student(batch["image"], training=True)
            margins = tf.stop_gradient(individual_margins(embedding, target, labels, self.student_means,
                                                          self.teacher_means))
            class_loss = classification_loss(self.head(embedding, labels, margins), labels)
            distill = distillation_loss(embedding, target, tf.ones(tf.shape(labels), tf.bool))
            loss = class_loss + self.distill_weight * distill + tf.add_n(self.student.losses or [0.0])
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.student_means.assign(updated_means(self.student_means, tf.stop_gradient(embedding), labels))
        labelled = tf.cast(labels >= 0, margins.dtype)
        mean_margin = tf.reduce_sum(margins * labelled) / tf.maximum(tf.reduce_sum(labelled), 1.0)
        for name, value in (("loss", loss), ("class_loss", class_loss), ("distill_loss", distill),
                            ("individual_margin", mean_margin)):
            self.tracked[name].update_state(value)
        return {name: metric.result() for name, metric in self.tracked.items()}


def rcm_finetune(model: keras.Model, cfg: Config, epochs: int, learning_rate: float, teacher: keras.Model,
                 distill_weight: float) -> list[float]:
    """`epochs` epochs of the (fake-quantised) embedder on the RCM margin loss over the recognizer's jittered training
    crops (unlabelled faces: the distillation term only), at a constant learning rate; the loss of each epoch."""
    settings = RecognizerSettings.from_config(cfg)
    train = cfg.train
    keras.utils.set_random_seed(train.seed)
    split, wide, items, labels = training_crops(settings, ProblemLog())
    size = settings.policy.size
    classes = len(split.classes)
    teacher_means = class_means(teacher, wide, labels, classes, size)
    student_means = class_means(model, wide, labels, classes, size)
    head = MarginHead(classes, settings.loss, settings.scale, settings.margin, name="rcm_head")
    head.build((None, teacher_means.shape[1]))
    head.kernel.assign(teacher_means.T)
    trainer = RcmTrainer(model, teacher, head, student_means, teacher_means, distill_weight)
    trainer.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay,
                                                     clipnorm=10.0))
    none = np.zeros(len(items), bool)
    data = training_batches(wide, labels, np.zeros((len(items), 1), np.float32), none, size,
                            train.batch_size, settings.gray_prob, train.seed)
    history = trainer.fit(data, epochs=epochs, verbose=2 if train.quiet else "auto")
    return [round(float(v), 5) for v in history.history["loss"]]
