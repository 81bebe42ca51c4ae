"""What a range clips, measured on the float histogram: the share outside the range, and the per-group figures."""

from __future__ import annotations

import numpy as np

from deploy.quantize.range_report import clipped_share, range_figures, short_name
from deploy.quantize.ranges import BINS, Histogram


def uniform(low: float, high: float) -> Histogram:
    return Histogram(low, high, np.ones(BINS))


def test_a_range_that_covers_the_values_clips_nothing_and_a_tighter_one_clips_its_share():
    hist = uniform(-2.0, 6.0)
    assert clipped_share(hist, -2.0, 6.0) == 0.0
    assert clipped_share(hist, -10.0, 10.0) == 0.0
    assert abs(clipped_share(hist, 0.0, 6.0) - 0.25) < 1 / BINS  # [-2, 0) is a quarter of the span
    assert abs(clipped_share(hist, -2.0, 2.0) - 0.5) < 1 / BINS


def test_clipping_counts_where_the_values_are_not_just_the_span():
    counts = np.zeros(BINS)
    counts[:BINS // 2] = 3.0  # three quarters of the values below the middle
    counts[BINS // 2:] = 1.0
    hist = Histogram(0.0, 8.0, counts)
    assert abs(clipped_share(hist, 4.0, 8.0) - 0.75) < 1e-9


def test_the_figures_name_each_group_with_a_range_and_its_extent():
    groups = {"model/conv1_leaky/LeakyRelu": (uniform(-1.0, 3.0), 2), "model/other/Relu": (uniform(0.0, 1.0), 1)}
    ranges = {"model/conv1_leaky/LeakyRelu": {"low": -1.0, "high": 1.0}}
    figures = range_figures(groups, ranges)
    assert list(figures) == ["model/conv1_leaky/LeakyRelu"]
    row = figures["model/conv1_leaky/LeakyRelu"]
    assert row["group_size"] == 2 and (row["float_min"], row["float_max"]) == (-1.0, 3.0)
    assert abs(row["clipped_share"] - 0.5) < 1 / BINS
    assert short_name("m/darknet_conv2_bn_1/batchnorm/add_1;m/darknet_conv2_1/convolution") == "darknet_conv2_bn_1"
    assert short_name("tfl.quantize") == "tfl.quantize"
