"""`invoke train` end to end on a few synthetic images: artifacts, manifest skip, resume after an interrupt."""

from __future__ import annotations

import json

import pytest

from deploy.evaluate import evaluate_stage
from models import train_callbacks
from models.train import train_stage
from models.train_callbacks import read_log
from pipeline.config import Config, load_config
from pipeline.errors import PipelineError

CONFIG = """
dataset:
  format: synthetic
  classes: [face]
  synthetic: {train_count: 8, val_count: 4, size: [160, 128], seed: 5}
model: {family: tiny, width: 0.0625, input_size: [128, 128], num_anchors: 3}
train: {epochs: 2, batch_size: 4, warmup_epochs: 1, quiet: true, budget_mib: 1.0}
"""


@pytest.fixture
def cfg(tmp_path, monkeypatch) -> Config:
    monkeypatch.setattr(Config, "build_dir", property(lambda self: tmp_path / "build" / self.name))
    path = tmp_path / "tinyface.yaml"
    path.write_text(CONFIG)
    return load_config(path)


@pytest.mark.slow  # about 40 s on 2 shared cores
def test_train_writes_the_model_log_curves_and_metadata_then_skips(cfg):
    result = train_stage(cfg)
    build = cfg.build_dir
    for name in ("model.keras", "model_meta.json", "train_log.csv", "train_curves.png", "anchors.json",
                 "anchors.png", "manifest.json"):
        assert (build / name).is_file(), name
    meta = json.loads((build / "model_meta.json").read_text())
    assert meta["grid"] == [4, 4] and meta["num_anchors"] == 3 and meta["classes"] == ["face"]
    rows = read_log(build / "train_log.csv")
    assert [row["epoch"] for row in rows] == [0, 1] and all("val_ap50" in row for row in rows)
    assert result.metrics["epochs_run"] == 2 and result.metrics["budget"]["uint8_bytes"] > 0
    assert train_stage(cfg).skipped
    report = evaluate_stage(cfg, split="val")
    keras_result = report["runtimes"]["keras"]
    assert 0.0 <= keras_result["ap50"] <= 1.0 and keras_result["recall_by_size"]["all"]["faces"] > 0
    assert "missing" in report["runtimes"]["uint8"] and "missing" in report["runtimes"]["kmodel"]  # not built here
    assert json.loads((build / "eval.json").read_text()) == report and (build / "eval_pr.png").is_file()


@pytest.mark.slow  # about 40 s on 2 shared cores
def test_an_interrupted_run_resumes_from_its_last_epoch(cfg, monkeypatch):
    original = train_callbacks.CurvesPlot.on_epoch_end

    def interrupt_after_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_callbacks.CurvesPlot, "on_epoch_end", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_stage(cfg)
    monkeypatch.setattr(train_callbacks.CurvesPlot, "on_epoch_end", original)
    metrics = train_stage(cfg).metrics
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_run"] == 1
    assert [row["epoch"] for row in read_log(cfg.build_dir / "train_log.csv")] == [0, 1]


def test_over_budget_training_is_refused_before_any_work(cfg):
    wide = load_config(cfg.path, {"model.width": 1.0, "train.budget_mib": 0.05})
    with pytest.raises(PipelineError, match="model.width <= "):
        train_stage(wide)
    assert not (wide.build_dir / "anchors.json").exists()
