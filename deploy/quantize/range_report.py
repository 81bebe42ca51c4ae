"""Where each activation range cuts the float model's values: for every range group of the uint8 TFLite, the float
twin's histogram on calibration images, the range the uint8 model holds, and the share of values outside it (what
the range clips) -> per-tensor figures for quant_ranges.json and a PNG grid, one panel per group."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.quantize import graph as qgraph
from deploy.quantize.ranges import BINS, Histogram
from deploy.quantize.statistics import histograms

PLOT_BINS = 128  # bins per panel (the calibration histograms' BINS summed in runs)
COLUMNS = 5


def clipped_share(hist: Histogram, low: float, high: float) -> float:
    """The share of the histogram's values whose bin centre lies outside [low, high]."""
    centres = hist.low + (np.arange(BINS) + 0.5) * (hist.high - hist.low) / BINS
    total = float(hist.counts.sum())
    return float(hist.counts[(centres < low) | (centres > high)].sum()) / total if total else 0.0


def group_histograms(uint8_bytes: bytes, float_bytes: bytes, images: Sequence[np.ndarray]
                     ) -> dict[str, tuple[Histogram, int]]:
    """Per range group, named by its first int8 tensor that has a float twin: that twin's histogram over `images`
    and the group's size."""
    quant, floating = read_tflite(uint8_bytes), read_tflite(float_bytes)
    plan = qgraph.plan(quant, floating)
    representatives = {}
    for members in plan.groups:
        twinned = [t for t in members if t in plan.twins]
        if twinned:
            representatives[twinned[0]] = len(members)
    hists = histograms(float_bytes, sorted({plan.twins[t] for t in representatives}), images)
    return {quant.tensors[t].name: (hists[plan.twins[t]], size) for t, size in representatives.items()}


def range_figures(groups: dict[str, tuple[Histogram, int]], ranges: dict[str, dict[str, Any]]
                  ) -> dict[str, dict[str, Any]]:
    """Per group with a range in `ranges` (quant_ranges.json's tensors): the float values' extent on the
    calibration images and the share the range clips."""
    out = {}
    for name, (hist, size) in groups.items():
        if name not in ranges:
            continue
        low, high = ranges[name]["low"], ranges[name]["high"]
        out[name] = {"group_size": size, "float_min": round(hist.low, 6), "float_max": round(hist.high, 6),
                     "clipped_share": round(clipped_share(hist, low, high), 6)}
    return out


def short_name(tensor: str) -> str:
    """The Keras layer a TFLite tensor name comes from ("model/darknet_conv2_leaky_1/LeakyRelu" ->
    "darknet_conv2_leaky_1"), else its last part; at most 28 characters."""
    parts = tensor.split(";")[0].split("/")
    return (parts[1] if len(parts) > 2 else parts[-1])[:28]


def plot_ranges(groups: dict[str, tuple[Histogram, int]], ranges: dict[str, dict[str, Any]], png: Path,
                title: str) -> None:
    """One panel per group: the float histogram (log counts) with the range's ends as red lines."""
    from pipeline.plotting import grid_figure, save_figure

    names = [name for name in groups if name in ranges]
    rows = max(1, -(-len(names) // COLUMNS))
    fig, axes = grid_figure(rows, COLUMNS, 3.2, 2.3)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):  # more panels than names: the rest are blank
        hist, size = groups[name]
        counts = hist.counts.reshape(PLOT_BINS, -1).sum(axis=1)
        edges = np.linspace(hist.low, hist.high, PLOT_BINS + 1)
        ax.stairs(np.maximum(counts, 0.5), edges, fill=True, color="#4c72b0")
        ax.set_yscale("log")
        low, high = ranges[name]["low"], ranges[name]["high"]
        for end in (low, high):
            ax.axvline(end, color="#c44e52", linewidth=1.2)
        share = clipped_share(hist, low, high)
        ax.set_title(f"{short_name(name)}{' x' + str(size) if size > 1 else ''}\nclips {share:.3%}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, png)
