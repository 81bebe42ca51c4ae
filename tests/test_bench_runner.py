"""The benchmark runner: what runs by default, and a clear refusal of an unknown name."""

from __future__ import annotations

import pytest

from benchmarks.runner import available, default_names, run_benchmarks
from pipeline.errors import PipelineError


def test_the_hour_long_backbone_comparison_runs_only_on_request():
    assert {"backbones", "compiler", "data", "firmware", "flash", "train"} <= set(available())
    assert "backbones" not in default_names() and "compiler" in default_names()


def test_an_unknown_benchmark_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(PipelineError, match="--only.*backbones"):
        run_benchmarks(tmp_path, ["nonesuch"])
    assert not list(tmp_path.iterdir())
