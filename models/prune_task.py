"""What the prune stages need from each kind of model: how to load it, the validation metric pruning keeps, and the
fine-tuning that recovers it. Detectors keep val AP@0.5 and fine-tune on their YOLOv2 loss (optionally distilled from
the unpruned model's head); recognizers keep the held-back identities' verification accuracy and fine-tune by
distillation from the unpruned embedder (models/recognizer/prune_support.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from models.data import load_records
from models.evaluate import collect_results, keras_predictor, load_eval_set, model_anchors
from models.metrics import evaluate_results
from models.prune_distill import DistilledLoss, with_teacher
from pipeline.config import Config

META_NAME = "model_meta.json"
# (model, epochs, learning rate, the unpruned model, distill weight) -> the training loss of each epoch
# (model, epochs, learning rate, the unpruned model, distillation weight, Keras callbacks) -> loss per epoch
FineTune = Callable[[keras.Model, int, float, keras.Model, float, list], list[float]]


@dataclass(frozen=True)
class PruneTask:
    key: str  # the report's metric keys: <key>_before, <key>_pruned, <key>_finetuned
    label: str  # the metric as a person reads it
    load: Callable[[Path], keras.Model]
    metric: Callable[[keras.Model], float]
    fine_tune: FineTune


def validation_ap(cfg: Config) -> Callable[[keras.Model], float]:
    """model -> VOC AP@0.5 on the val split (the set is loaded once)."""
    input_size, deploy = cfg.model.input_size, cfg.deploy
    anchors, classes = model_anchors(cfg.build_dir / META_NAME)
    data = load_eval_set(load_records(cfg, "val"), input_size)

    def ap50(model: keras.Model) -> float:
        results = collect_results(keras_predictor(model), data, anchors, len(classes), input_size, deploy.nms_iou)
        return round(float(evaluate_results(results, classes, deploy.score_threshold)["ap50"]), 4)
    return ap50


def fine_tune_detector(model: keras.Model, cfg: Config, epochs: int, learning_rate: float,
                       teacher: keras.Model | None = None, distill: float = 0.0,
                       anchors: np.ndarray | None = None, callbacks: list | None = None) -> list[float]:
    """A few epochs of the training recipe at a low constant learning rate, to recover from pruning; with a teacher
    and distill > 0, its head outputs are soft targets too (models/prune_distill.py). Anchors from the build's
    model_meta.json unless given. The loss of each epoch."""
    from models.train import detector_loss, train_dataset

    train = cfg.train
    keras.utils.set_random_seed(train.seed)
    records = load_records(cfg, "train")
    if anchors is None:
        anchors, _ = model_anchors(cfg.build_dir / META_NAME)
    loss = detector_loss(cfg, anchors)
    trained = model
    if teacher is not None and distill > 0:
        trained, loss = with_teacher(model, teacher), DistilledLoss(loss, distill)
    trained.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay,
                                                     clipnorm=10.0), loss=loss)
    history = trained.fit(train_dataset(records, cfg.model.input_size, train), epochs=epochs,
                          verbose=2 if train.quiet else "auto", callbacks=callbacks or [])
    return [round(float(v), 5) for v in history.history["loss"]]


def prune_task(cfg: Config) -> PruneTask:
    """The task of the config's model (model.task)."""
    from models.yolo_head import load_detector

    if cfg.model.task == "recognizer":
        from models.recognizer.prune_support import distil_finetune, held_back_accuracy

        return PruneTask("val_accuracy", "held-back verification accuracy", load_detector, held_back_accuracy(cfg),
                         lambda model, epochs, lr, unpruned, _, callbacks: distil_finetune(model, cfg, epochs, lr,
                                                                                          unpruned, callbacks))
    return PruneTask("val_ap50", "val AP@0.5", load_detector, validation_ap(cfg),
                     lambda model, epochs, lr, unpruned, distill, callbacks: fine_tune_detector(
                         model, cfg, epochs, lr, unpruned if distill > 0 else None, distill, callbacks=callbacks))
