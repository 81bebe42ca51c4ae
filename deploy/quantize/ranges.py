"""Activation ranges from a calibration histogram, one function per method, and the int8 (scale, zero point) of a
range as TFLite computes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BINS = 2048  # histogram bins per tensor (TensorRT's entropy calibration uses 2048 too)
LEVELS = 255  # int8 steps across a range
MIN_SPAN = 1e-6  # a tensor that is constant on every calibration image still gets a non-zero scale
CANDIDATES = 200  # clip factors tried per end by mse and kl
SEARCH_ROUNDS = 2  # alternations of the high-end and low-end searches


@dataclass
class Histogram:
    """Counts of one tensor's calibration values in BINS equal bins over [low, high] (low <= 0 <= high)."""

    low: float
    high: float
    counts: np.ndarray  # float64, BINS

    @property
    def width(self) -> float:
        return (self.high - self.low) / len(self.counts)

    @property
    def centres(self) -> np.ndarray:
        return self.low + (np.arange(len(self.counts)) + 0.5) * self.width


def int8_params(low: float, high: float) -> tuple[float, int]:
    """TFLite's asymmetric int8 (scale, zero point) for a real range, zero made exactly representable."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low < MIN_SPAN:
        high = low + MIN_SPAN
    scale = float(np.float32((high - low) / LEVELS))
    zero = int(np.clip(round(-128 - low / scale), -128, 127))
    return scale, zero


def represented(scale: float, zero: int) -> tuple[float, float]:
    """The real range an int8 (scale, zero point) covers."""
    return (-128 - zero) * scale, (127 - zero) * scale


def minmax_range(hist: Histogram) -> tuple[float, float]:
    return hist.low, hist.high


def percentile_range(hist: Histogram, percentile: float) -> tuple[float, float]:
    """Clip each tail to (100 - percentile) % of the values (linear inside a bin); zero stays inside."""
    total = hist.counts.sum()
    if total == 0:
        return hist.low, hist.high
    tail = (100.0 - percentile) / 100.0 * total
    edges = hist.low + np.arange(len(hist.counts) + 1) * hist.width
    cumulative = np.concatenate([[0.0], np.cumsum(hist.counts)])
    low = float(np.interp(tail, cumulative, edges)) if tail > 0 else hist.low
    high = float(np.interp(total - tail, cumulative, edges)) if tail > 0 else hist.high
    return min(low, 0.0), max(high, 0.0)


def _search(hist: Histogram, cost: Callable[[int, int], float], smallest: float) -> tuple[float, float]:
    """The range minimising `cost(first_bin, last_bin)` over ends shrunk toward zero by independent factors
    (from `smallest` to 1), found by alternating the two one-dimensional searches."""
    n = len(hist.counts)
    zero_bin = -hist.low / hist.width if hist.width > 0 else 0.0
    factors = np.linspace(smallest, 1.0, CANDIDATES)
    lows = np.unique(np.round(zero_bin * (1 - factors)).astype(int)) if zero_bin > 0 else np.array([0])
    highs = np.unique(np.round(zero_bin + factors * (n - zero_bin)).astype(int))
    first, last = 0, n
    for _ in range(SEARCH_ROUNDS):
        last = int(min(highs, key=lambda b: cost(first, b)))
        first = int(min(lows, key=lambda b: cost(b, last)))
    return min(hist.low + first * hist.width, 0.0), max(hist.low + last * hist.width, 0.0)


def mse_range(hist: Histogram) -> tuple[float, float]:
    """The range with the least expected squared error between the float values and their fake-quantized codes:
    s^2 / 12 for the values inside it, the clipping distance for those outside."""
    x, counts = hist.centres, hist.counts

    def cost(first: int, last: int) -> float:
        scale, zero = int8_params(hist.low + first * hist.width, hist.low + last * hist.width)
        low_q, high_q = represented(scale, zero)
        inside = (x >= low_q) & (x <= high_q)
        return float(np.sum(counts * np.where(inside, scale * scale / 12.0, (x - np.clip(x, low_q, high_q)) ** 2)))

    return _search(hist, cost, 0.02) if hist.width > 0 else (hist.low, hist.high)


def _expand(reference: np.ndarray, levels: int) -> np.ndarray:
    """TensorRT's quantized distribution: each of `levels` chunks of bins shares its total equally among its
    non-empty bins."""
    sizes = np.full(levels, len(reference) // levels)
    sizes[:len(reference) % levels] += 1  # np.array_split's chunks
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nonzero = reference > 0
    totals = np.add.reduceat(reference, starts)
    filled = np.add.reduceat(nonzero.astype(np.float64), starts)
    share = np.repeat(np.divide(totals, filled, out=np.zeros(levels), where=filled > 0), sizes)
    return np.where(nonzero, share, 0.0)


def kl_range(hist: Histogram) -> tuple[float, float]:
    """Entropy calibration (TensorRT): the candidate range whose 255-level quantized distribution is closest in
    KL divergence to the clipped reference distribution (outliers folded into the edge bins). TensorRT clips |x|
    symmetrically with 128 levels; int8 here is asymmetric, so each end has its own clip and the candidate range
    is split into 255 levels."""
    counts = hist.counts

    def cost(first: int, last: int) -> float:
        if last - first < LEVELS:
            return np.inf
        reference = counts[first:last].copy()
        reference[0] += counts[:first].sum()
        reference[-1] += counts[last:].sum()
        q = _expand(counts[first:last], LEVELS)
        if reference.sum() == 0 or q.sum() == 0:
            return np.inf
        p, q = reference / reference.sum(), q / q.sum()
        mask = p > 0
        return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))

    if hist.width == 0:
        return hist.low, hist.high
    return _search(hist, cost, min(1.0, LEVELS / len(counts)))


def choose_range(hist: Histogram, method: str, percentile: float) -> tuple[float, float]:
    """The activation range `method` picks from one tensor's histogram."""
    if method == "minmax":
        return minmax_range(hist)
    if method == "percentile":
        return percentile_range(hist, percentile)
    if method == "mse":
        return mse_range(hist)
    if method == "kl":
        return kl_range(hist)
    raise ValueError(f"no range rule for method {method!r}")
