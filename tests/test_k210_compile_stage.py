"""`invoke compile` stage: artifacts, report contents, the detector metadata, manifest skipping, the budget,
--inspect."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import uuid

import numpy as np
import pytest

from deploy.k210.compiler.compile_stage import compile_stage, inspect_kmodel
from deploy.k210.format.kmodel_io import load_kmodel
from deploy.k210.sim.simulator import simulate
from pipeline.config import load_config
from pipeline.errors import PipelineError
from tests.conftest import shared_path
from tests.kpu_models import STAGE_DETECTOR, tflite, tflite_pair

META = {"classes": ["face"], "anchors": [[1.0, 1.2], [2.5, 3.0]], "input_size": [32, 24], "grid": [8, 6],
        "num_anchors": 2}


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    return tflite(STAGE_DETECTOR)


@pytest.fixture
def config(tmp_path, tiny_tflite):
    name = f"k210_stage_test_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.yaml"
    path.write_text("model:\n  input_size: [32, 24]\n")
    cfg = load_config(path)
    cfg.build_dir.mkdir(parents=True)
    (cfg.build_dir / "model_uint8.tflite").write_bytes(tiny_tflite)
    (cfg.build_dir / "model_meta.json").write_text(json.dumps(META))
    yield cfg
    shutil.rmtree(cfg.build_dir, ignore_errors=True)


def test_compile_writes_kmodel_report_and_chart(config, capsys):
    result = compile_stage(config)
    build = config.build_dir
    assert not result.skipped and result.metrics["kpu_layers"] >= 3
    report = json.loads((build / "compile_report.json").read_text())
    assert report["detector"] == META
    assert report["fits_budget"] and report["budget_mib"] == 5.5
    assert report["outputs"][0]["shape"] == [12, 6, 8] and report["outputs"][0]["dtype"] == "float32"
    first = report["layers"][0]
    assert first["type"] == "K210_CONV" and first["macs"] == 8 * 3 * 9 * 24 * 32 and first["cycles"] > 0
    assert report["totals"]["fps"] > 0 and report["totals"]["weight_bytes"] > 0
    totals, calibration = report["totals"], report["calibration"]
    assert totals["input_transfer_us"] == pytest.approx(3 * 24 * 32 * calibration["constants"]["input_byte"]["value"]
                                                        / 400, abs=0.01)
    assert totals["latency_ms"] == pytest.approx(sum(r["time_us"] for r in report["layers"]) / 1000
                                                 + totals["input_transfer_us"] / 1000, abs=2e-3)
    assert totals["latency_uncertainty_ms"] == pytest.approx(totals["latency_ms"] * calibration["model_fit_error"],
                                                             abs=2e-3)
    assert calibration["published_timings"] > 30 and calibration["constants"]["line_step"]["source"].startswith("fit")
    assert (build / "compile_layers.png").read_bytes()[:4] == b"\x89PNG"
    model = load_kmodel(build / "model.kmodel")
    out = simulate(model, np.zeros((3, 24, 32), np.uint8)).outputs[0]
    assert out.size == 12 * 6 * 8
    printed = capsys.readouterr().out
    assert "estimated K210 latency" in printed and f"+- {totals['latency_uncertainty_ms']} ms" in printed
    assert compile_stage(config).skipped


def test_fuse_leaky_option_folds_the_leaky_layer_and_reruns_the_stage(config):
    two_layer = compile_stage(config).metrics["kpu_layers"]
    values = copy.deepcopy(config.values)
    values["compile"]["fuse_leaky"] = True
    fused = compile_stage(dataclasses.replace(config, values=values))
    assert not fused.skipped and fused.metrics["kpu_layers"] == two_layer - 1


def test_budget_overrun_writes_nothing(config):
    with pytest.raises(PipelineError, match="over the 0.001 MiB budget"):
        compile_stage(config, budget_mib=0.001)
    assert not (config.build_dir / "model.kmodel").exists()
    assert not (config.build_dir / "compile_report.json").exists()


def test_missing_tflite_is_named(config):
    (config.build_dir / "model_uint8.tflite").unlink()
    with pytest.raises(PipelineError, match="model_uint8.tflite.*invoke export"):
        compile_stage(config)


def test_inspect_prints_the_nncase_model():
    text = inspect_kmodel(shared_path("kmodels", "voc20_yolov2_v3.kmodel"))
    assert text.count("K210_CONV (type 10240)") == 16 and "main_mem_usage 43752" in text


def test_cycle_model_line_steps_match_the_spec_for_the_nncase_yolo():
    from deploy.k210.compiler.cycles import line_steps
    from deploy.k210.format.kmodel import K210ConvBody

    model = load_kmodel(shared_path("kmodels", "voc20_yolov2_v3.kmodel"))
    convs = [layer.body.args for layer in model.layers if isinstance(layer.body, K210ConvBody)]
    total = sum(line_steps(a.in_shape, a.out_channels, bool(a.depth_wise_layer)) for a in convs)
    assert abs(total - 3.17e6) / 3.17e6 < 0.01  # spec §12.3: 3.17 M line-steps, ~7.9 ms at 400 MHz


def test_sixteen_bit_stage_takes_the_quantized_float_model(config):
    """compile.weight_bits 16 is refused by field (nothing written) without model_quantized_float.tflite beside the
    uint8 model; with it the kmodel says 16-bit, and going back to 8 bits compiles again."""
    build, wide = config.build_dir, config.with_values({"compile.weight_bits": 16})
    with pytest.raises(PipelineError, match="model_quantized_float.tflite.*compile.weight_bits"):
        compile_stage(wide)
    assert not (build / "model.kmodel").exists()
    uint8, floating = tflite_pair(STAGE_DETECTOR)
    (build / "model_uint8.tflite").write_bytes(uint8)
    (build / "model_quantized_float.tflite").write_bytes(floating)
    assert compile_stage(wide).metrics["weight_bits"] == 16
    assert not load_kmodel(build / "model.kmodel").eight_bit_weights
    report = json.loads((build / "compile_report.json").read_text())
    assert report["weight_bits"] == 16 and report["totals"]["latency_ms_at_8bit_weight_rate"] > 0
    narrow = compile_stage(config)
    assert not narrow.skipped and narrow.metrics["weight_bits"] == 8
    assert load_kmodel(build / "model.kmodel").eight_bit_weights
    assert "latency_ms_at_8bit_weight_rate" not in json.loads((build / "compile_report.json").read_text())["totals"]
