"""Batch-norm scale factors |gamma| (network slimming, Liu et al. 2017): the L1 sparsity penalty that training adds
on them (`train.bn_l1`) and their histogram (PNG + JSON), the picture of how many channels are near zero."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from pipeline.atomic import write_json
from pipeline.errors import PipelineError
from pipeline.plotting import new_figure, save_figure

HISTOGRAM_BINS = 40


def batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of the model, in graph order."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def add_bn_l1(model: keras.Model, strength: float) -> int:
    """Put an L1 penalty of `strength` on every BN gamma (Keras adds it to the loss at each step); the number of
    penalised layers. Set on the variables, not the layer configs, so saved models do not carry it."""
    layers = batch_norms(model)
    if not layers:
        raise PipelineError(f"model {model.name!r} has no batch normalization layer to put the L1 penalty on",
                            field="train.bn_l1", expected="0 for a model without batch norm")
    for layer in layers:
        layer.gamma.regularizer = keras.regularizers.L1(strength)
    return len(layers)


def all_gammas(model: keras.Model) -> np.ndarray:
    """|gamma| of every BN channel of the model, concatenated."""
    layers = batch_norms(model)
    return np.concatenate([np.abs(layer.gamma.numpy()) for layer in layers]) if layers else np.zeros(0)


def gamma_summary(gammas: np.ndarray) -> dict[str, float | int]:
    """Count, quantiles and the share of channels under 1e-2 and 1e-1 of the largest |gamma|."""
    top = float(gammas.max()) if gammas.size else 0.0
    return {"channels": int(gammas.size), "max": round(top, 5),
            **{f"p{q}": round(float(np.percentile(gammas, q)), 5) for q in (10, 50, 90)},
            "share_below_1pct_of_max": round(float((gammas < 0.01 * top).mean()), 4),
            "share_below_10pct_of_max": round(float((gammas < 0.1 * top).mean()), 4)}


def write_gamma_histogram(series: dict[str, np.ndarray], png_path: Path, json_path: Path, title: str) -> None:
    """One histogram per named set of |gamma| (e.g. before / after) on shared bins: PNG and JSON (counts + summary)."""
    values = [v for v in series.values() if v.size]
    top = max((float(v.max()) for v in values), default=1.0) or 1.0
    edges = np.linspace(0, top, HISTOGRAM_BINS + 1)
    fig, ax = new_figure(7, 4.5)
    report: dict[str, object] = {"title": title, "bin_edges": [round(float(e), 5) for e in edges], "series": {}}
    for name, gammas in series.items():
        counts, _ = np.histogram(gammas, bins=edges)
        ax.hist(gammas, bins=edges, alpha=0.55, label=f"{name} ({gammas.size} channels)")
        report["series"][name] = {"counts": counts.tolist(), **gamma_summary(gammas)}
    ax.set_xlabel("|gamma| of the batch norm after each conv filter")
    ax.set_ylabel("channels")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, png_path)
    write_json(json_path, report)
