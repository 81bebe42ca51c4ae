"""Per-layer pruning sensitivity (Li et al. 2017, "Pruning filters for efficient ConvNets"): each pruning unit (a
conv, or a group of convs whose maps are added) alone loses 10 % ... 90 % of its filters (the least important by
`prune.criterion`), and the val metric is measured without fine-tuning. One curve per unit (PNG + JSON); the
sensitivity allocation then prunes the flat curves more than the steep ones.

Removing a filter is simulated in place: its batch norm's gamma and beta (or, without batch norm, its kernel and
bias) are set to zero, so the channel is exactly 0 after the activation, as if it were not there (tests check this
against the rebuilt model), which is much quicker than rebuilding the model for each of the ~200 points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from matplotlib import colormaps

from models.backbones.blocks import KPU_MIN_CHANNELS
from models.prune import batch_norm_after, filter_scores, prune_units, top_mask
from pipeline.atomic import write_json
from pipeline.plotting import new_figure, save_figure
from pipeline.progress import bar

RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 10))
Metric = Callable[[keras.Model], float]


def _silence(model: keras.Model, conv: str, dead: np.ndarray) -> list[tuple[keras.layers.Layer, list[np.ndarray]]]:
    """Zero the `dead` filters of one conv in place; the (layer, weights) to put back."""
    norm = batch_norm_after(model)[conv]
    layer = norm if norm is not None else model.get_layer(conv)
    saved = layer.get_weights()
    weights = [w.copy() for w in saved]
    if norm is not None:  # gamma, beta, moving mean, moving variance
        weights[0][dead], weights[1][dead] = 0, 0
    else:  # kernel (..., out), bias
        weights[0][..., dead] = 0
        if len(weights) > 1:
            weights[1][dead] = 0
    layer.set_weights(weights)
    return [(layer, saved)]


def kept_filters(count: int, ratio: float) -> int:
    """Filters a unit of `count` keeps when `ratio` of them are removed, never under the KPU's floor."""
    return min(count, max(KPU_MIN_CHANNELS, count - int(round(ratio * count))))


def sensitivity_curves(model: keras.Model, metric: Metric, criterion: str, ratios: tuple[float, ...] = RATIOS
                       ) -> dict[str, Any]:
    """{baseline, ratios, units: {unit: {filters, kept[], metric[]}}}: the metric with each unit alone pruned."""
    units = prune_units(model, filter_scores(model, criterion))
    baseline = metric(model)
    curves: dict[str, Any] = {}
    with bar(desc="sensitivity", total=len(units) * len(ratios), unit="point") as progress:
        for unit, score in units.items():
            kept, values = [], []
            for ratio in ratios:
                keep = kept_filters(len(score), ratio)
                dead = ~top_mask(score, keep)
                restore = [pair for conv in unit.split("+") for pair in _silence(model, conv, dead)]
                try:
                    values.append(round(float(metric(model)), 4))
                finally:
                    for layer, weights in restore:
                        layer.set_weights(weights)
                kept.append(keep)
                progress.update(1)
            curves[unit] = {"filters": len(score), "kept": kept, "metric": values}
    return {"baseline": round(float(baseline), 4), "ratios": list(ratios), "criterion": criterion, "units": curves}


def write_sensitivity(result: dict[str, Any], png_path: Path, json_path: Path, metric_name: str) -> None:
    """The curves as JSON and as one PNG line per unit (metric against the share of its filters removed)."""
    fig, ax = new_figure(9, 5.5)
    count = max(1, len(result["units"]) - 1)
    for index, (unit, curve) in enumerate(result["units"].items()):
        ax.plot([0, *result["ratios"]], [result["baseline"], *curve["metric"]], marker=".",
                color=colormaps["viridis"](index / count),
                label=f"{unit} ({curve['filters']})")
    ax.axhline(result["baseline"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("share of the layer's filters removed (alone, no fine-tuning)")
    ax.set_ylabel(metric_name)
    ax.set_title(f"pruning sensitivity per layer (criterion {result['criterion']})")
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    save_figure(fig, png_path)
    write_json(json_path, result)


def allowed_ratio(curve: dict[str, Any], ratios: list[float], baseline: float, tolerance: float) -> float:
    """The largest share of a unit's filters whose removal costs at most `tolerance` of the metric, interpolated
    on the curve made monotone (a point counts only when no smaller ratio lost more)."""
    drops = np.maximum.accumulate(np.maximum(0.0, baseline - np.asarray(curve["metric"], float)))
    xs = np.concatenate([[0.0], drops + np.arange(1, len(drops) + 1) * 1e-9])  # strictly increasing for interp
    return float(np.interp(tolerance, xs, [0.0, *ratios], right=ratios[-1]))
