"""Fit the cycle model's constants (deploy/k210/compiler/cycles.py) to the published K210 timings in
hardware/k210_timings.json by relative least squares, and measure how well it reproduces them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.cycles import (
    CONSTANTS,
    FITTED,
    Work,
    coefficients,
    conv_weight_bytes,
    cycles,
    line_steps,
)
from pipeline.errors import PipelineError
from pipeline.json_files import read_json_object

TIMINGS = Path(__file__).resolve().parents[3] / "hardware" / "k210_timings.json"


@dataclass(frozen=True)
class Point:
    """One published layer: its work, clock and measured time (None where only the model total is known)."""

    model: str
    index: int
    op: str
    work: Work
    hz: float
    measured_s: float | None


@dataclass(frozen=True)
class Fit:
    constants: dict[str, float]
    points: list[Point]
    models: dict[str, dict[str, Any]]  # name -> {"fit", "source", "layers", "whole_model", "measured_s", "predicted_s"}
    layer_error: float  # RMS relative error over the fitted layer timings
    model_error: float  # RMS relative error over the published whole-model totals (fitted and validation models)

    def predicted_s(self, point: Point) -> float:
        return cycles(point.work, self.constants) / point.hz


def _work(layer: dict[str, Any], bits: int) -> Work:
    op = layer["op"]
    if op == "input":
        return Work("input", values=int(layer["bytes"]))
    if op in ("cpu", "dequantize"):
        return Work("cpu", values=int(layer["values"]), dequantize=op == "dequantize")
    if op not in ("conv", "dw"):
        raise PipelineError(f"unknown op {op!r}", path=TIMINGS, field="op", expected="conv, dw, cpu, dequantize, input")
    c, _, _ = in_shape = tuple(int(v) for v in layer["in"])
    depthwise = op == "dw"
    out_c = c if depthwise else int(layer["out_c"])
    weights = layer["k"] ** 2 * (c if depthwise else c * out_c)
    return Work("kpu", line_steps=line_steps(in_shape, out_c, depthwise),
                weight_bytes=conv_weight_bytes(weights, out_c, bits), weight_bits=bits,
                main_out_bytes=int(layer.get("main_out_bytes", 0)))


def load_points(path: Path = TIMINGS) -> tuple[list[Point], dict[str, dict[str, Any]]]:
    """Every published layer of the fixture, and its models' descriptions."""
    data = read_json_object(path, what="published K210 timings",
                            missing_hint="hardware/k210_timings.json of the repository")
    points = []
    for name, model in data["models"].items():
        for index, layer in enumerate(model["layers"]):
            hz = model["kpu_hz"] if layer["op"] in ("conv", "dw") else model["cpu_hz"]
            ms = layer.get("ms")
            points.append(Point(name, index, layer["op"], _work(layer, model["weight_bits"]), float(hz),
                                None if ms is None else ms / 1000))
    return points, data["models"]


def _non_negative_lstsq(rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least squares with every unknown >= 0: an unknown that comes out negative is fixed at 0 and the others are
    fitted again, until none is negative."""
    free = np.ones(rows.shape[1], bool)
    while True:
        solution = np.zeros(rows.shape[1])
        solution[free], *_ = np.linalg.lstsq(rows[:, free], targets, rcond=None)
        if (solution >= 0).all():
            return solution
        free &= solution > 0


def fit(path: Path = TIMINGS) -> Fit:
    """Least squares of the relative error over the fitted models' layer timings, for the constants in FITTED
    (each >= 0: a cost cannot be negative); the others keep their stated values."""
    points, models = load_points(path)
    fixed = {name: value for name, (value, _) in CONSTANTS.items() if name not in FITTED}
    rows, targets = [], []
    for p in points:
        if p.measured_s is None or not models[p.model]["fit"]:
            continue
        coef = coefficients(p.work)
        measured = p.measured_s * p.hz
        known = sum(count * fixed[name] for name, count in coef.items() if name in fixed)
        rows.append([coef.get(name, 0.0) / measured for name in FITTED])
        targets.append(1.0 - known / measured)
    solution = _non_negative_lstsq(np.array(rows, float), np.array(targets))
    constants = {**fixed, **{name: float(v) for name, v in zip(FITTED, solution, strict=True)}}
    residuals = np.array(rows) @ solution - np.array(targets)
    summary: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        mine = [p for p in points if p.model == name]
        predicted = sum(cycles(p.work, constants) / p.hz for p in mine)
        measured = model.get("total_ms")
        measured_s = measured / 1000 if measured is not None else sum(p.measured_s or 0.0 for p in mine)
        summary[name] = {"fit": model["fit"], "source": model["source"], "layers": len(mine),
                         "whole_model": measured is not None, "measured_s": measured_s, "predicted_s": predicted}
    totals = [s["predicted_s"] / s["measured_s"] - 1 for s in summary.values() if s["whole_model"]]
    return Fit(constants=constants, points=points, models=summary,
               layer_error=float(np.sqrt(np.mean(residuals ** 2))), model_error=float(np.sqrt(np.mean(
                   np.square(totals)))))


def fitted_point_count(result: Fit) -> int:
    return sum(p.measured_s is not None and result.models[p.model]["fit"] for p in result.points)
