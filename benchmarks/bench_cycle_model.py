"""The calibrated K210 cycle model against the published on-board timings it was fitted on (hardware/k210_timings.json):
predicted vs measured per layer and per whole model, its fit error, and as the baseline the uncalibrated spec §12.3
model of before (1.03 line-steps + 0.31 cycles per 16-bit weight byte, halved for 8-bit, 800 cycles per layer, no
input transfer) on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.cycle_fit import Fit, fit
from deploy.k210.compiler.cycles import CONSTANTS, cycles

SPEC_MODEL = {**{name: value for name, (value, _) in CONSTANTS.items()}, "line_step": 1.03, "kpu_layer": 800.0,
              "weight8_byte": 0.155, "weight16_byte": 0.31, "main_out_byte": 1 / 8, "dequantize_value": 8.0,
              "input_byte": 0.0}


def _rows(result: Fit, constants: dict[str, float]) -> list[dict[str, Any]]:
    return [{"model": p.model, "index": p.index, "op": p.op, "measured_us": round(p.measured_s * 1e6, 2),
             "predicted_us": round(cycles(p.work, constants) / p.hz * 1e6, 2), "fitted": result.models[p.model]["fit"]}
            for p in result.points if p.measured_s is not None]


def _rms(rows: list[dict[str, Any]]) -> float:
    errors = [r["predicted_us"] / r["measured_us"] - 1 for r in rows if r["fitted"]]
    return float(np.sqrt(np.mean(np.square(errors))))


def _model_totals(result: Fit, constants: dict[str, float]) -> dict[str, dict[str, float]]:
    totals = {}
    for name, model in result.models.items():
        if model["whole_model"]:
            predicted = sum(cycles(p.work, constants) / p.hz for p in result.points if p.model == name)
            totals[name] = {"measured_ms": round(model["measured_s"] * 1e3, 3),
                            "predicted_ms": round(predicted * 1e3, 3),
                            "ratio": round(predicted / model["measured_s"], 3), "fitted": model["fit"]}
    return totals


def run(out_dir: Path) -> dict[str, Any]:
    result = fit()
    rows, baseline = _rows(result, result.constants), _rows(result, SPEC_MODEL)
    _plot(rows, baseline, out_dir / "cycle_model.png")
    return {
        "data": "hardware/k210_timings.json",
        "constants": {name: round(value, 4) for name, value in result.constants.items()},
        "layer_fit_error_rms": round(result.layer_error, 4), "model_fit_error_rms": round(result.model_error, 4),
        "models": _model_totals(result, result.constants),
        "baseline_spec_model": {"layer_error_rms": round(_rms(baseline), 4),
                                "models": _model_totals(result, SPEC_MODEL)},
        "layer_error_ratio_vs_baseline": round(result.layer_error / _rms(baseline), 3),
        "layers": [{**r, "baseline_us": b["predicted_us"]} for r, b in zip(rows, baseline, strict=True)],
    }


def _plot(rows: list[dict[str, Any]], baseline: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import atomic_path

    figure, axis = plt.subplots(figsize=(6, 6))
    measured = [r["measured_us"] for r in rows]
    axis.scatter(measured, [r["predicted_us"] for r in rows], label="calibrated", s=18)
    axis.scatter(measured, [r["predicted_us"] for r in baseline], label="spec §12.3 (before)", s=12, marker="x")
    ends = [min(measured) * 0.5, max(measured) * 2]
    axis.plot(ends, ends, color="grey", linewidth=0.8)
    axis.set(xscale="log", yscale="log", xlabel="measured on a K210 (us)", ylabel="predicted (us)",
             title="K210 layer time: predicted vs published")
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
