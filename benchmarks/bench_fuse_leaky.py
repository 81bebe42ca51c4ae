"""Fused vs separate LeakyReLU (`compile.fuse_leaky`) by the calibrated cycle model: the face-mask detector's
architecture (configs/facemask.yaml, random weights: the latency depends only on the shapes) compiled both ways, with
the estimated latency, its uncertainty and the KPU layer count of each. Accuracy is not measured here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.cycles import MODEL_FIT_ERROR, calibration_note, estimate_kmodel
from deploy.k210.compiler.driver import compile_tflite
from deploy.tflite import export_uint8
from pipeline.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "facemask.yaml"


def _tflite() -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from models.yolo_head import build_detector

    keras.utils.set_random_seed(20261207)
    cfg = load_config(CONFIG)
    width, height = cfg.model.input_size
    model = build_detector(cfg.values["model"], 1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model_uint8.tflite"
        export_uint8(model, path, [rng.random((height, width, 3), dtype=np.float32) for _ in range(8)])
        return path.read_bytes()


def run(out_dir: Path) -> dict[str, Any]:
    data = _tflite()
    result: dict[str, Any] = {"model": str(CONFIG.name), "estimate": calibration_note()}
    for name, fuse in (("separate", False), ("fused", True)):
        compiled = compile_tflite(data, fuse_leaky=fuse)
        estimate = estimate_kmodel(compiled.model)
        kpu = [row for row in estimate.layers if row[1] == "kpu"]
        result[name] = {"kpu_layers": len(kpu), "layers": len(estimate.layers),
                        "latency_ms": round(estimate.total_us / 1000, 3),
                        "uncertainty_ms": round(estimate.uncertainty_us / 1000, 3),
                        "kpu_ms": round(sum(us for _, _, us in kpu) / 1000, 3), "kmodel_bytes": len(compiled.data)}
    separate, fused = result["separate"]["latency_ms"], result["fused"]["latency_ms"]
    result["fused_to_separate_latency"] = round(fused / separate, 3)
    result["saving_percent"] = round(100 * (1 - fused / separate), 1)
    result["note"] = (f"both estimates share the model's systematic error (+-{MODEL_FIT_ERROR:.0%} per model), so "
                      "their ratio is firmer than either number; the saving is the removed layers' line-steps, "
                      "fixed cost and table fetch")
    return result
