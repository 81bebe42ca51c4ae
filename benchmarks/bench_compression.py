"""Issue #15's compression table (seed paper 003's): skip DarkNet19, DarkNet19 and MobileNetV1 (configs/compare/) on
the face-mask set, each before compression, after pruning, after quantization and after both: val AP@0.5, estimated
K210 time and model size. Pruning: -40 % MACs by the global gamma threshold, fine-tuned; quantization: the uint8
TFLite compiled to a kmodel, its AP measured on the kmodel (the C runtime, the simulator's bytes).

Times are estimates of the compiler's cycle model (not a board), all of one kind: the compile report's latency of
the kmodel (input transfer and CPU layers included). The K210 runs only uint8, so a float model's time there is the
time of its architecture's kmodel: "before" has the time of "quantized", "pruned" that of "both" (an estimate of the
float layers alone counted 7-25 % less and made quantization look slower). Sizes: float32 TFLite bytes, kmodel
bytes. Hours on 2 cores, so
it runs only when asked (`invoke bench --only compression`); COMPRESSION_BENCH_EPOCHS=N (training) and
COMPRESSION_BENCH_FINETUNE=N (fine-tuning) run a reduced version, which the result records."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import REPO_ROOT, SHARED_DATA, Config, load_config
from pipeline.plotting import new_figure, save_figure

NAMES = ("skip_darknet19", "darknet19", "mobilenet_v1")
STATES = ("before", "pruned", "quantized", "both")
PRUNE = {"prune.target_metric": "macs", "prune.target_reduction": 0.4, "prune.allocation": "global_gamma"}
ON_REQUEST_ONLY = True


def _overrides() -> dict[str, Any]:
    reduced = {"train.epochs": os.environ.get("COMPRESSION_BENCH_EPOCHS"),
               "prune.finetune_epochs": os.environ.get("COMPRESSION_BENCH_FINETUNE")}
    return {**PRUNE, "train.quiet": True, **{k: int(v) for k, v in reduced.items() if v}}


def _quantized(cfg: Config, model_path: Path) -> dict[str, Any]:
    """Export + compile `model_path` in cfg's build folder; AP of the kmodel, its estimated time and size."""
    from deploy.evaluate import evaluate_stage
    from deploy.export import export_stage
    from deploy.k210.compiler.compile_stage import compile_stage

    export_stage(cfg, model_path=model_path)
    report = compile_stage(cfg).metrics
    kmodel = evaluate_stage(cfg, runtimes=("kmodel",))["runtimes"]["kmodel"]
    float_bytes = (cfg.build_dir / "model_float.tflite").stat().st_size
    return {"ap50": round(float(kmodel["ap50"]), 4), "time_ms": report.get("latency_ms"),
            "bytes": report.get("kmodel_bytes"), "float_bytes": float_bytes}


def _float_state(ap50: float, quantized: dict[str, Any]) -> dict[str, Any]:
    """A float model's row: its AP, its float TFLite bytes, and the K210 time of its architecture's kmodel."""
    return {"ap50": ap50, "time_ms": quantized["time_ms"], "bytes": quantized["float_bytes"]}


def _row(config_path: Path) -> dict[str, Any]:
    """Train (or reuse), prune, and measure the four states of one config."""
    from deploy.k210.compiler.cycles import kpu_conv_us
    from models.prune_stage import prune_stage
    from models.train import train_stage

    cfg = load_config(config_path, _overrides())
    trained = train_stage(cfg).metrics
    pruned = prune_stage(cfg, conv_time=kpu_conv_us).metrics
    build = cfg.build_dir
    twin = replace(cfg, name=f"{cfg.name}_pruned")  # the pruned model's export and kmodel in a folder of their own
    twin.build_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(build / "model_meta.json", twin.build_dir / "model_meta.json")
    quantized, both = _quantized(cfg, build / "model.keras"), _quantized(twin, build / "pruned.keras")
    states = {"before": _float_state(pruned["val_ap50_before"], quantized),
              "pruned": _float_state(pruned["val_ap50_finetuned"], both), "quantized": quantized, "both": both}
    for state in states.values():
        state.pop("float_bytes", None)
    return {"config": str(config_path.relative_to(REPO_ROOT)), "train_epochs": trained.get("epochs_run"),
            "finetune_epochs": pruned["finetune_epochs"], "macs_reduction": pruned["reductions"]["macs"],
            "states": states,
            "ratios_to_before": {s: {k: round(v[k] / states["before"][k], 3) for k in ("ap50", "time_ms", "bytes")
                                     if states["before"][k]} for s, v in states.items()}}


def _plot(rows: dict[str, dict[str, Any]], png: Path) -> None:
    fig, axes = new_figure(12, 4, columns=3)
    x = np.arange(len(rows))
    for ax, (key, label) in zip(axes, (("ap50", "val AP@0.5"), ("time_ms", "estimated K210 ms (cycle model)"),
                                       ("bytes", "model bytes")), strict=True):
        for offset, state in enumerate(STATES):
            ax.bar(x + (offset - 1.5) * 0.2, [rows[n]["states"][state][key] or 0 for n in rows], 0.2, label=state)
        ax.set_xticks(x, list(rows), fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    save_figure(fig, png)


def run(out_dir: Path) -> dict[str, Any]:
    """The table for every configs/compare/<name>.yaml of NAMES, with a PNG of the three measures."""
    if not (SHARED_DATA / "facemask").is_dir():
        return {"skipped": f"the face-mask data is absent ({SHARED_DATA / 'facemask'})"}
    rows = {name: _row(REPO_ROOT / "configs" / "compare" / f"{name}.yaml") for name in NAMES}
    _plot(rows, out_dir / "compression.png")
    return {"configs": rows, "settings": _overrides(),
            "note": "times: compiler cycle-model estimates at 400 MHz, not board measurements"}
