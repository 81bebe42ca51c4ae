"""render -> build -> run as the tasks call them: config-driven paths, manifest skipping, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.firmware import stages
from deploy.firmware.reference_model import voc20_report
from pipeline import config as config_module
from pipeline.config import load_config
from pipeline.errors import PipelineError
from tests.conftest import shared_path


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "REPO_ROOT", tmp_path)  # build/<config>/ goes under tmp_path
    path = tmp_path / "voc.yaml"
    path.write_text("firmware:\n  name: voc20\n  kmodel_storage: flash\n")
    return load_config(path)


def test_render_build_run_on_host(cfg, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(voc20_report()))
    kmodel = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    first = stages.render_stage(cfg, kmodel=kmodel, report=report)
    assert not first.skipped and first.metrics["c_name"] == "voc20"
    assert stages.render_stage(cfg, kmodel=kmodel, report=report).skipped
    built = stages.build_stage(cfg, "host")
    assert built.metrics["size"]["fits"] and Path(built.metrics["program"]).is_file()
    images = tmp_path / "images"
    images.mkdir()
    (images / "dog.bmp").write_bytes(shared_path("kmodels", "dog.bmp").read_bytes())
    result = stages.run_firmware(cfg, "host", images)
    assert [d["label"] for d in result.frames[0].detections] == ["bicycle", "car", "dog"]
    saved = json.loads((cfg.build_dir / "firmware" / "run_host.json").read_text())
    assert saved["frames"][0]["detections"] == result.frames[0].detections


def test_stage_errors_say_what_to_run_first(cfg, tmp_path):
    with pytest.raises(PipelineError, match="invoke compile"):
        stages.render_stage(cfg)
    with pytest.raises(PipelineError, match="invoke render"):
        stages.build_stage(cfg, "host")
    with pytest.raises(PipelineError, match="host or qemu or k210"):  # sim builds the qemu target
        stages.build_stage(cfg, "esp32")
    with pytest.raises(PipelineError, match="host, qemu or sim"):
        stages.run_firmware(cfg, "k210", tmp_path)
