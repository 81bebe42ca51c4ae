"""Fine-tuning that never returns a worse model than it started from: the task's metric after every epoch, and the
best weights (the starting ones included) restored at the end, as training keeps its best-val checkpoint."""

from __future__ import annotations

from collections.abc import Callable

import keras


class KeepBest(keras.callbacks.Callback):
    """Scores `model` with `metric` after each epoch; at the end `model` holds the best-scoring weights, epoch 0
    being the weights before fine-tuning (scored `start`). `scores[i]` is epoch i+1's metric."""

    def __init__(self, model: keras.Model, metric: Callable[[keras.Model], float], start: float) -> None:
        super().__init__()
        self.student, self.metric = model, metric
        self.best, self.best_epoch, self.weights = start, 0, model.get_weights()
        self.scores: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = float(self.metric(self.student))
        self.scores.append(score)
        if score > self.best:
            self.best, self.best_epoch, self.weights = score, epoch + 1, self.student.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.student.set_weights(self.weights)
