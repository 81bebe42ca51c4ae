"""What pruning needs for a recognizer: the held-back verification accuracy it keeps (never LFW, which is only
reported), and fine-tuning that recovers it by distillation from the unpruned embedder: the pruned model learns to
give the same (L2-normalised) embedding on the same jittered training crops. The margin head is not saved with the
embedder, so the recognizer has no label path here; the unpruned model is the teacher whatever prune.distill says.
Pruning distils the plain (uncentred) embeddings: distilling them centred by the unpruned model's centre was measured
worse (LFW dev Keras 0.7813 against 0.7887 for the product recognizer at -33.5 % MACs, both with the centred
QAT export)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from models.data.problems import ProblemLog
from models.recognizer.augment import training_batches
from models.recognizer.losses import distillation_loss
from models.recognizer.settings import RecognizerSettings
from models.recognizer.train import held_back_set, pair_verification, training_crops
from pipeline.config import Config


def held_back_accuracy(cfg: Config) -> Callable[[keras.Model], float]:
    """model -> verification accuracy on the held-back identities' pairs (the crops are cut once), on centred
    embeddings when the config deploys a centre (recognizer.centre_images): each model centred by the mean direction
    of its own held-back embeddings, so pruning keeps what the centred runtimes compare."""
    from models.recognizer.centre import centre_images

    settings = RecognizerSettings.from_config(cfg)
    log = ProblemLog()
    images, pairs = held_back_set(settings.identity_split(log).val, settings, cfg.train.seed, log)
    centred = centre_images(cfg) > 0
    return lambda model: round(float(pair_verification(model, images, pairs, centred)["accuracy_mean"]), 4)


class EmbeddingDistiller(keras.Model):
    """Trains `student` to give `teacher`'s embedding direction (1 - cosine; both centred when a centre is given) on
    each batch; the teacher is frozen."""

    def __init__(self, student: keras.Model, teacher: keras.Model, centre: np.ndarray | None = None) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        self.centre = None if centre is None else tf.constant(np.asarray(centre, np.float32))
        self.teacher.trainable = False
        self.loss_mean = keras.metrics.Mean(name="distill_loss")

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(images, training=training)

    @property
    def metrics(self) -> list:
        return [self.loss_mean]

    def train_step(self, batch: dict) -> dict:
        target = self.teacher(batch["image"], training=False)
        with tf.GradientTape() as tape:
            embedding = self.student(batch["image"], training=True)
            loss = distillation_loss(embedding, target, tf.ones(tf.shape(embedding)[:1], tf.bool), self.centre)
            loss = loss + tf.add_n(self.student.losses or [0.0])  # its layers' regularisers (QAT's kurtosis)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.loss_mean.update_state(loss)
        return {"distill_loss": self.loss_mean.result()}


def distil_finetune(model: keras.Model, cfg: Config, epochs: int, learning_rate: float,
                    teacher: keras.Model, callbacks: list | None = None,
                    centre: np.ndarray | None = None) -> list[float]:
    """`epochs` epochs of `model` matching `teacher`'s embedding (centred by `centre`, as the runtimes compare them,
    when given) on the recognizer's jittered training crops (its labelled and unlabelled faces), at a constant
    learning rate; the distillation loss of each epoch."""
    settings = RecognizerSettings.from_config(cfg)
    train = cfg.train
    keras.utils.set_random_seed(train.seed)
    _, wide, kept, _ = training_crops(settings, ProblemLog())
    none = np.zeros(len(kept), bool)
    data = training_batches(wide, np.full(len(kept), -1, np.int32), np.zeros((len(kept), 1), np.float32), none,
                            settings.policy.size, train.batch_size, settings.gray_prob, train.seed)
    distiller = EmbeddingDistiller(model, teacher, centre)
    distiller.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay,
                                                       clipnorm=10.0))
    history = distiller.fit(data, epochs=epochs, verbose=2 if train.quiet else "auto", callbacks=callbacks or [])
    return [round(float(v), 5) for v in history.history["distill_loss"]]
