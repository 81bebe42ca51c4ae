"""Keras callbacks of `invoke train`: validation AP with a best-model checkpoint, a wall-clock limit, PNG curves."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import keras
import numpy as np

from models.distribute import unsynchronized
from models.evaluate import EvalSet, collect_results, keras_predictor
from models.metrics import evaluate_results
from pipeline.plotting import new_figure, save_figure

VAL_METRIC = "val_ap50"


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """model.save to a temp .keras file beside `path`, then rename, so a reader never sees half a model. The file
    never records a distributed training's BatchNormalization sync (models/distribute.py)."""
    tmp = path.with_name(f".{path.stem}.partial.keras")
    try:
        with unsynchronized(model):
            model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_log(csv_path: Path) -> list[dict[str, float]]:
    """Rows of a Keras CSVLogger file as floats (empty when the file does not exist)."""
    if not csv_path.is_file():
        return []
    with csv_path.open() as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


class ValidationAP(keras.callbacks.Callback):
    """After each epoch: VOC AP@0.5 on the val set into logs[val_ap50]; the best model so far is saved to `best_path`.
    On a resumed run the best value is read back from the CSV log so an earlier, better model is never overwritten."""

    def __init__(self, data: EvalSet, anchors: np.ndarray, classes: list[str], input_size: tuple[int, int],
                 nms_iou: float, score_threshold: float, best_path: Path, log_path: Path) -> None:
        super().__init__()
        self.data, self.anchors, self.classes = data, anchors, classes
        self.input_size, self.nms_iou, self.score_threshold = input_size, nms_iou, score_threshold
        self.best_path, self.log_path = best_path, log_path
        self.best = -1.0

    def on_train_begin(self, logs=None) -> None:
        previous = [row[VAL_METRIC] for row in read_log(self.log_path) if VAL_METRIC in row]
        self.best = max(previous) if previous and self.best_path.is_file() else -1.0

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        results = collect_results(keras_predictor(self.model), self.data, self.anchors, len(self.classes),
                                  self.input_size, self.nms_iou)
        metrics = evaluate_results(results, self.classes, self.score_threshold)
        logs[VAL_METRIC] = metrics["ap50"]
        logs["val_ap50_95"] = metrics["ap50_95"]
        logs["val_recall"] = metrics["recall_by_size"]["all"]["recall"]
        if metrics["ap50"] > self.best:
            self.best = metrics["ap50"]
            save_model_atomic(self.model, self.best_path)
        print(f"\nepoch {epoch + 1}: val AP@0.5 {metrics['ap50']:.4f} (best {self.best:.4f}), "
              f"AP@[.5:.95] {metrics['ap50_95']:.4f}, recall {logs['val_recall']:.3f}", flush=True)


class TimeLimit(keras.callbacks.Callback):
    """Stop before an epoch that would end after `minutes` of training (0 = no limit)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.seconds = minutes * 60.0
        self.start = self.epoch_start = 0.0
        self.stopped_early = False

    def on_train_begin(self, logs=None) -> None:
        self.start = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        now = time.monotonic()
        if self.seconds and now + (now - self.epoch_start) - self.start > self.seconds:
            self.stopped_early = True
            self.model.stop_training = True
            print(f"\ntime limit {self.seconds / 60:g} min reached: stopping after epoch {epoch + 1}", flush=True)


class CurvesPlot(keras.callbacks.Callback):
    """Redraw the curves from the CSV log after every epoch (the detector's loss and validation AP unless `plot`
    says otherwise)."""

    def __init__(self, log_path: Path, png_path: Path, plot=None) -> None:
        super().__init__()
        self.log_path, self.png_path, self.plot = log_path, png_path, plot or plot_training_curves

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.plot(read_log(self.log_path), self.png_path)


def plot_training_curves(rows: list[dict[str, float]], png_path: Path) -> None:
    """Training loss (left axis, log scale) and val AP@0.5 / AP@[.5:.95] (right axis) per epoch."""
    if not rows:
        return
    epochs = [row["epoch"] + 1 for row in rows]
    fig, ax = new_figure(7, 4.5)
    ax.plot(epochs, [row["loss"] for row in rows], color="tab:blue", label="train loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    right = ax.twinx()
    for key, colour in ((VAL_METRIC, "tab:red"), ("val_ap50_95", "tab:orange")):
        right.plot(epochs, [row.get(key, np.nan) for row in rows], color=colour, label=key)
    right.set_ylabel("validation AP")
    right.set_ylim(0, 1)
    right.legend(loc="upper left")
    save_figure(fig, png_path)
