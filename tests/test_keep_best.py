"""Fine-tuning keeps the best weights by the task's metric, the starting ones included."""

from __future__ import annotations

import keras
import numpy as np

from models.keep_best import KeepBest


def _model_and_data():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    return model, x, 3 * x  # training pulls the weight from 0 toward 3


def weight(model) -> float:
    return float(model.get_weights()[0][0, 0])


def test_epochs_that_improve_the_metric_are_kept():
    model, x, y = _model_and_data()
    closer_to_three = lambda m: -abs(weight(m) - 3)  # noqa: E731
    keep = KeepBest(model, closer_to_three, closer_to_three(model))
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[keep])
    assert keep.best_epoch == 4 and len(keep.scores) == 4
    assert keep.scores == sorted(keep.scores) and weight(model) > 1.0
    assert keep.best == closer_to_three(model)


def test_fine_tuning_that_only_hurts_leaves_the_starting_weights():
    model, x, y = _model_and_data()
    closer_to_zero = lambda m: -abs(weight(m))  # noqa: E731
    keep = KeepBest(model, closer_to_zero, closer_to_zero(model))
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[keep])
    assert keep.best_epoch == 0 and all(score < 0 for score in keep.scores)
    assert weight(model) == 0.0
