"""The benchmark runner: what runs by default, a clear refusal of an unknown name, and every file a benchmark
writes below its output folder."""

from __future__ import annotations

import types

import pytest

from benchmarks import runner
from benchmarks.runner import available, default_names, run_benchmarks
from pipeline.errors import PipelineError


def test_the_hour_long_backbone_comparison_runs_only_on_request():
    assert {"backbones", "compiler", "data", "firmware", "flash", "train"} <= set(available())
    assert "backbones" not in default_names() and "compiler" in default_names()


def test_the_recognizer_comparison_runs_only_on_request_and_its_configs_are_valid_and_fit():
    from benchmarks.bench_recognizer import COMPARE_DIR
    from models.budget import check_budget
    from models.recognizer.embedder import build_embedder
    from models.recognizer.settings import RecognizerSettings
    from pipeline.config import load_config

    assert "recognizer" in available() and "recognizer" not in default_names()
    assert "compression" in available() and "compression" not in default_names()
    rows = set()
    for path in sorted(COMPARE_DIR.glob("*.yaml")):
        cfg = load_config(path)
        settings = RecognizerSettings.from_config(cfg)
        check_budget(cfg.values["model"], 0, 1.0, build=lambda m, _, s=settings: build_embedder(m, s.embedding_size,
                                                                                s.head_channels))
        rows.add((cfg.model.family, settings.loss, settings.distill, settings.class_weight > 0))
    for loss in ("softmax", "cosface", "arcface"):  # scratch vs distilled for every loss
        assert {("skip_darknet19", loss, "none", True), ("skip_darknet19", loss, "dlib", True)} <= rows
    assert {("mobilefacenet", "cosface", "none", True), ("mobilefacenet", "cosface", "dlib", True)} <= rows


def test_an_unknown_benchmark_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(PipelineError, match="--only.*backbones"):
        run_benchmarks(tmp_path, ["nonesuch"])
    assert not list(tmp_path.iterdir())


def test_a_benchmark_writes_its_stages_below_the_output_folder(tmp_path, monkeypatch):
    """A benchmark that runs pipeline stages (training a comparison config, caching a tool) writes them under
    <out>/stages/, and the build root is back to what it was afterwards."""
    from pipeline.atomic import write_text
    from pipeline.config import build_root

    def run(out_dir):
        write_text(build_root() / "some_config" / "model.txt", "trained")
        return {"root": str(build_root())}

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(runner, "available", lambda: ["fake"])
    monkeypatch.setattr(runner, "_module", lambda name: types.SimpleNamespace(run=run))
    out = tmp_path / "bench"
    result = run_benchmarks(out, ["fake"])["fake"]
    assert result["root"] == str(out / "stages") and (out / "stages" / "some_config" / "model.txt").is_file()
    assert (out / "fake.json").is_file() and not (tmp_path / "elsewhere").exists()
    assert build_root() == tmp_path / "elsewhere"


def test_a_benchmark_reads_the_trained_product_models_from_the_build_root_it_started_with(tmp_path, monkeypatch):
    """The quantization and fuse-leaky benchmarks read build/facemask/ as `invoke train` left it, not the empty
    folder of the same name below their output."""
    from pipeline.config import load_config

    cfg = load_config("configs/facemask.yaml")
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "product"))
    monkeypatch.setattr(runner, "available", lambda: ["fake"])
    monkeypatch.setattr(runner, "_module", lambda name: types.SimpleNamespace(
        run=lambda out_dir: {"trained": str(runner.trained_build(cfg)), "stages": str(cfg.build_dir)}))
    result = run_benchmarks(tmp_path / "bench", ["fake"])["fake"]
    assert result["trained"] == str(tmp_path / "product" / "facemask")
    assert result["stages"] == str(tmp_path / "bench" / "stages" / "facemask")


def test_every_benchmark_result_names_the_machine_it_ran_on(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "available", lambda: ["fake"])
    monkeypatch.setattr(runner, "_module", lambda name: types.SimpleNamespace(run=lambda out_dir: {}))
    machine = run_benchmarks(tmp_path, ["fake"])["fake"]["machine"]
    assert machine["cpus"] >= 1 and machine["cpu_model"] and machine["python"].startswith("3.")
    assert set(machine["vector"]) <= {"sse4_2", "avx", "avx2", "avx512f", "fma"}
