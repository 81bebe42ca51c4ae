"""Config loading (defaults, overrides, refusals) and manifest-based stage skipping."""

from __future__ import annotations

import pytest

from pipeline.config import load_config, parse_override
from pipeline.errors import PipelineError
from pipeline.stage import run_stage


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("dataset:\n  format: voc\n  train: data/train\n")
    cfg = load_config(path, {"train.epochs": 3, "model.width": 0.5})
    assert cfg.name == "mine" and cfg.build_dir.name == "mine"
    assert cfg.get("train.epochs") == 3 and cfg.get("model.width") == 0.5
    assert cfg.get("model.input_size") == [320, 256]
    assert cfg.resolve_path(cfg.get("dataset.train")) == tmp_path / "data" / "train"
    assert parse_override("train.epochs=5") == ("train.epochs", 5)


@pytest.mark.parametrize("text, words", [
    ("datset:\n  format: voc\n", "field 'datset'"),
    ("train:\n  epochs: many\n", "field 'train.epochs'"),
    ("model: 3\n", "expected a mapping"),
    ("dataset: [\n", "not valid YAML"),
])
def test_bad_config_names_file_and_field(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError) as info:
        load_config(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_missing_config_file():
    with pytest.raises(PipelineError, match="config file not found"):
        load_config("configs/does-not-exist.yaml")


def test_stage_skips_when_inputs_unchanged_and_reruns_on_change(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a")
    out = tmp_path / "build" / "out.txt"
    out.parent.mkdir()
    calls = []
    messages = []

    def work():
        calls.append(1)
        out.write_text(source.read_text().upper())
        return {"length": len(source.read_text())}

    def run(force=False, params=None):
        return run_stage(tmp_path / "build", "upper", inputs=[source], params=params or {"k": 1}, outputs=[out],
                         work=work, force=force, say=messages.append)

    assert not run().skipped
    second = run()
    assert second.skipped and second.metrics == {"length": 1} and "skipped" in messages[-1]
    assert not run(force=True).skipped
    assert not run(params={"k": 2}).skipped
    source.write_text("bb")
    assert not run(params={"k": 2}).skipped
    out.write_text("tampered")
    assert not run(params={"k": 2}).skipped
    assert len(calls) == 5 and out.read_text() == "BB"


def test_failed_stage_records_nothing(tmp_path):
    def work():
        raise PipelineError("boom")

    with pytest.raises(PipelineError):
        run_stage(tmp_path, "broken", inputs=[], params={}, outputs=[tmp_path / "x"], work=work)
    assert not (tmp_path / "manifest.json").exists()
