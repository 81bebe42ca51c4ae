"""Fast simulator for evaluation (issue #18 section 2): frames/s of the kmodel on the C runtime driven from Python
(deploy/k210/sim/fast.py, a batch per runner process, Python-side file I/O and output shaping included) against the
NumPy reference simulator (the baseline, measured in the same run) and LiteRT (1 thread) on the same uint8 TFLite,
at 320x256: the DarkNet-style detector of bench_compiler (1.4 MB of weights). Both clocks are reported: process CPU
time (this process and its children; what a busy, shared machine disturbs least) and wall time, with the load
average at the start. Also checks that the two simulators give the same bytes on every reference frame."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_compiler import HEIGHT, WIDTH, darknet_like_tflite
from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.sim.batch import ReferenceSimulator
from deploy.k210.sim.fast import FastSimulator
from pipeline.plotting import new_figure, save_figure

GOAL_FPS = 30.0
FRAMES = {"numpy_reference": 3, "fast_c_runtime": 60, "litert_1_thread": 30}
LABELS = {"numpy_reference": "NumPy reference", "fast_c_runtime": "fast (C runtime)",
          "litert_1_thread": "LiteRT uint8, 1 thread"}


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the runner processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _measure(run: Callable[[np.ndarray], Any], frames: np.ndarray) -> tuple[dict[str, float], Any]:
    """Frames/s of `run` over `frames` (one call), by CPU and by wall time; and what it returned."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    result = run(frames)
    cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    return {"frames": len(frames), "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "frames_per_s_cpu": round(len(frames) / cpu, 2), "frames_per_s_wall": round(len(frames) / wall, 2)}, result


def _litert(data: bytes) -> Callable[[np.ndarray], None]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def run(frames: np.ndarray) -> None:
        for chw in frames:
            interpreter.set_tensor(index, chw.transpose(1, 2, 0)[None])
            interpreter.invoke()

    run(frames=np.zeros((1, 3, HEIGHT, WIDTH), np.uint8))  # warm-up
    return run


def _plot(engines: dict[str, dict[str, float]], png: Path) -> None:
    fig, ax = new_figure(8, 4.5)
    names = list(engines)
    x = np.arange(len(names))
    for offset, clock, hatch in ((-0.2, "cpu", ""), (0.2, "wall", "//")):
        values = [engines[name][f"frames_per_s_{clock}"] for name in names]
        ax.bar(x + offset, values, 0.4, hatch=hatch, color=["tab:gray", "tab:green", "tab:blue"],
               edgecolor="black", label=f"{clock} time")
        for xi, name, value in zip(x, names, values, strict=True):
            ratio = engines[name][f"ratio_to_numpy_{clock}"]
            ax.text(xi + offset, value * 1.08, f"{value:g}\nx{ratio:g}", ha="center", fontsize=7)
    ax.axhline(GOAL_FPS, color="tab:red", linestyle="--", linewidth=1, label=f"goal {GOAL_FPS:g} frames/s")
    ax.set_yscale("log")
    ax.set_ylim(top=3 * max(row["frames_per_s_cpu"] for row in engines.values()))
    ax.set_xticks(x, [LABELS[name] for name in names])
    ax.set_ylabel(f"frames/s at {WIDTH}x{HEIGHT} (log)")
    ax.set_title("kmodel evaluation engines on one model (ratios: x the NumPy reference, same run)")
    ax.legend(fontsize=8)
    save_figure(fig, png)


def run(out_dir: Path) -> dict[str, Any]:
    load = os.getloadavg()
    data = darknet_like_tflite()
    kmodel = compile_tflite(data).data
    frames = np.random.default_rng(1).integers(0, 256, (FRAMES["fast_c_runtime"], 3, HEIGHT, WIDTH), np.uint8)
    fast = FastSimulator(kmodel)  # builds the runner (once, cached) outside the timed part
    fast.run(frames[:1])  # warm-up
    engines, outputs = {}, {}
    runs = {"numpy_reference": ReferenceSimulator(kmodel).run, "fast_c_runtime": fast.run,
            "litert_1_thread": _litert(data)}
    for name, engine in runs.items():
        engines[name], outputs[name] = _measure(engine, frames[:FRAMES[name]])
    for row in engines.values():
        for clock in ("cpu", "wall"):
            baseline = engines["numpy_reference"][f"frames_per_s_{clock}"]
            row[f"ratio_to_numpy_{clock}"] = round(row[f"frames_per_s_{clock}"] / baseline, 2)
    reference = outputs["numpy_reference"]  # the first frames of the fast run are the same frames
    identical = all(a.tobytes() == b.tobytes() for got, want in zip(outputs["fast_c_runtime"][:len(reference)],
                                                                   reference, strict=True)
                    for a, b in zip(got, want, strict=True))
    _plot(engines, out_dir / "fast_sim.png")
    fast_row, litert_row = engines["fast_c_runtime"], engines["litert_1_thread"]
    return {
        "model": {"tflite_bytes": len(data), "kmodel_bytes": len(kmodel), "input": [WIDTH, HEIGHT],
                  "source": "benchmarks.bench_compiler.darknet_like_tflite (random weights, seeded)"},
        "engines": engines,
        "fast_vs_litert_cpu": round(fast_row["frames_per_s_cpu"] / litert_row["frames_per_s_cpu"], 3),
        "fast_vs_litert_wall": round(fast_row["frames_per_s_wall"] / litert_row["frames_per_s_wall"], 3),
        "goal_frames_per_s": GOAL_FPS,
        "goal_met_cpu": fast_row["frames_per_s_cpu"] >= GOAL_FPS,
        "goal_met_wall": fast_row["frames_per_s_wall"] >= GOAL_FPS,
        "outputs_byte_identical": identical,
        "load_average_at_start": [round(v, 2) for v in load],
        "timing": "one call per engine over its frames; CPU = process_time + finished children's user+sys time",
    }
