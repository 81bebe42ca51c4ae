"""Fused vs separate LeakyReLU (`compile.fuse_leaky`), the decision table of issue #18: for each variant the
calibrated cycle model's latency, its uncertainty and the KPU layer count on the face-mask detector's architecture
(configs/facemask.yaml with random weights: the latency depends only on the shapes), and, when the product detector
is trained (build/facemask/model_uint8.tflite), the kmodel's val AP@0.5 and AP@[.5:.95] with each variant compiled
from that same uint8 TFLite (the C runtime, the same bytes as the simulator). A ReLU-trained model would have the
fused variant's layer count (ReLU is free in every conv's activation table), so its latency is the fused row's; its
accuracy needs a training run of its own, which this benchmark does not make."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import trained_build
from deploy.k210.compiler.cycles import MODEL_FIT_ERROR, calibration_note, estimate_kmodel
from deploy.k210.compiler.driver import compile_tflite
from deploy.tflite import export_uint8
from pipeline.config import Config, load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "facemask.yaml"
VARIANTS = (("separate", False), ("fused", True))


def _random_tflite(cfg: Config) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from models.yolo_head import build_detector

    keras.utils.set_random_seed(20261207)
    width, height = cfg.model.input_size
    model = build_detector(cfg.values["model"], 1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model_uint8.tflite"
        export_uint8(model, path, [rng.random((height, width, 3), dtype=np.float32) for _ in range(8)])
        return path.read_bytes()


def _latency(data: bytes, fuse: bool) -> dict[str, Any]:
    compiled = compile_tflite(data, fuse_leaky=fuse)
    estimate = estimate_kmodel(compiled.model)
    kpu = [row for row in estimate.layers if row[1] == "kpu"]
    return {"kpu_layers": len(kpu), "layers": len(estimate.layers),
            "latency_ms": round(estimate.total_us / 1000, 3),
            "uncertainty_ms": round(estimate.uncertainty_us / 1000, 3),
            "kpu_ms": round(sum(us for _, _, us in kpu) / 1000, 3), "kmodel_bytes": len(compiled.data)}


def _accuracy(cfg: Config, work: Path) -> dict[str, Any]:
    """Val AP of the trained product detector's kmodel compiled both ways (eval.json + PR PNG in the bench's
    stages folder), or why there is none."""
    from deploy.predictors import kmodel_predictor
    from models.evaluate import Runtime, evaluate_runtimes, output_hwc
    from pipeline.atomic import write_bytes

    trained = trained_build(cfg)
    source = trained / "model_uint8.tflite"
    if not source.is_file():
        return {"skipped": f"no trained face-mask detector at {source} (`invoke build --config "
                           "configs/facemask.yaml`)"}
    write_bytes(cfg.build_dir / "model_meta.json", (trained / "model_meta.json").read_bytes())
    hwc = output_hwc(cfg, cfg.build_dir / "model_meta.json")
    runtimes = {}
    for name, fuse in VARIANTS:
        path = work / f"{name}.kmodel"
        write_bytes(path, compile_tflite(source.read_bytes(), fuse_leaky=fuse).data)
        runtimes[name] = Runtime(path, lambda p: kmodel_predictor(p, hwc, "fast"))
    report = evaluate_runtimes(cfg, runtimes)
    rows = {name: {"ap50": round(row["ap50"], 4), "ap50_95": round(row["ap50_95"], 4),
                   "recall_under_16px": round(row["recall_by_size"]["0-16px"]["recall"], 4)}
            for name, row in report["runtimes"].items()}
    return {"model": str(source), "val_images": report["images"], **rows}


def _plot(result: dict[str, Any], png: Path) -> None:
    from pipeline.plotting import new_figure, save_figure

    names = [name for name, _ in VARIANTS]
    accuracy = result["accuracy"]
    fig, axes = new_figure(10, 3.8, columns=2)
    latency = [result[n]["latency_ms"] for n in names]
    axes[0].bar(names, latency, yerr=[result[n]["uncertainty_ms"] for n in names], color=["#4c72b0", "#dd8452"])
    axes[0].set_ylabel("estimated K210 latency, ms (cycle model)")
    for i, name in enumerate(names):
        axes[0].text(i, latency[i] / 2, f"{result[name]['kpu_layers']} KPU layers", ha="center", color="white")
    if "skipped" in accuracy:
        axes[1].text(0.5, 0.5, accuracy["skipped"], ha="center", va="center", wrap=True, fontsize=8)
        axes[1].set_axis_off()
    else:
        for offset, key in ((-0.2, "ap50"), (0.2, "ap50_95")):
            axes[1].bar(np.arange(len(names)) + offset, [accuracy[n][key] for n in names], width=0.4, label=key)
        axes[1].set_xticks(range(len(names)), names)
        axes[1].set_ylabel(f"kmodel val AP ({accuracy['val_images']} images)")
        axes[1].legend(loc="lower right")
    fig.suptitle("LeakyReLU fused into the conv's activation table vs a separate KPU layer (face-mask detector)")
    save_figure(fig, png)


def run(out_dir: Path) -> dict[str, Any]:
    cfg = load_config(CONFIG)
    data = _random_tflite(cfg)
    result: dict[str, Any] = {"model": str(CONFIG.name), "estimate": calibration_note()}
    for name, fuse in VARIANTS:
        result[name] = _latency(data, fuse)
    separate, fused = result["separate"]["latency_ms"], result["fused"]["latency_ms"]
    result["fused_to_separate_latency"] = round(fused / separate, 3)
    result["saving_percent"] = round(100 * (1 - fused / separate), 1)
    result["note"] = (f"both estimates share the model's systematic error (+-{MODEL_FIT_ERROR:.0%} per model), so "
                      "their ratio is firmer than either number; the saving is the removed layers' line-steps, "
                      "fixed cost and table fetch")
    work = out_dir / "fuse_leaky"
    work.mkdir(parents=True, exist_ok=True)
    result["accuracy"] = _accuracy(cfg, work)
    _plot(result, out_dir / "fuse_leaky.png")
    return result
