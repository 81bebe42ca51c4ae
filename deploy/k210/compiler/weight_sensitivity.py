"""Which KPU layers would pay for 16-bit weights: each weighted TFLite op's KPU layers alone given 16-bit weights (the
rest 8-bit), run in the NumPy KPU simulator on a few images, and the model output's SQNR against the float model that
was quantized (model_quantized_float.tflite in LiteRT), next to the weight bytes that layer adds; the all-8-bit and
all-16-bit kmodels bracket them.

Honest scope: kmodel V3 has one weight width per model (header flags bit 0, which kpu.c copies into eight_bit_mode
once at load), so a per-layer mix is built here in memory for the simulator only and never written (write_kmodel
refuses it). Shipping one would take a runtime that sets eight_bit_mode before each layer (and a file format that
records the width per layer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.cycles import kpu_weight_bytes
from deploy.k210.compiler.driver import wide_weights
from deploy.k210.compiler.emit import emit_kmodel
from deploy.k210.compiler.lower import lower_graph
from deploy.k210.compiler.memory_plan import plan_memory
from deploy.k210.compiler.program import KpuStep, Program
from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.k210.compiler.wide_weights import WideWeights
from deploy.k210.format import kmodel as km
from deploy.k210.sim.simulator import simulate
from pipeline.progress import progress


def sqnr_db(outputs: list[np.ndarray], references: list[np.ndarray]) -> float:
    """10 log10(signal power / error power) of the outputs against the references, over all of them."""
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in references)
    noise = sum(float(np.sum((o.astype(np.float64) - r) ** 2)) for o, r in zip(outputs, references, strict=True))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def float_references(float_source: Path, images: np.ndarray) -> list[np.ndarray]:
    """The float model's first output per float HWC image in [0, 1], flat in the kmodel's CHW order."""
    from deploy.tflite import LiteRTRunner

    runner = LiteRTRunner(float_source)
    out = []
    for image in images:
        value = runner.run(image)
        out.append((value[0].transpose(2, 0, 1) if value.ndim == 4 else value).reshape(-1))
    return out


def weight_bytes(program: Program) -> int:
    """KPU weight + BN + activation-table bytes of a lowered program."""
    return sum(kpu_weight_bytes(step) for step in program.steps if isinstance(step, KpuStep))


def mixed_model(uint8: Path, wide: WideWeights | None) -> tuple[km.KModel, Program]:
    """The kmodel (in memory: a per-layer width mix cannot be written) with `wide`'s layers 16-bit."""
    program = lower_graph(read_tflite(uint8), wide=wide)
    return emit_kmodel(program, plan_memory(program)), program


def output_sqnr(model: km.KModel, codes: np.ndarray, references: list[np.ndarray]) -> float:
    """The model's first output in the NumPy simulator on uint8 CHW `codes`, as SQNR (dB) against `references`."""
    return sqnr_db([simulate(model, x).dequantized[0].reshape(-1) for x in codes], references)


def _measure(uint8: Path, wide: WideWeights | None, codes: np.ndarray, references: list[np.ndarray]
             ) -> tuple[float, int]:
    """(output SQNR in dB, KPU weight + BN + table bytes) of the model with `wide`'s layers 16-bit."""
    model, program = mixed_model(uint8, wide)
    return output_sqnr(model, codes, references), weight_bytes(program)


def layer_sensitivity(uint8: Path, float_source: Path, images: np.ndarray) -> dict[str, Any]:
    """Per weighted op: the output SQNR with its KPU layers alone 16-bit, the gain over all-8-bit and the bytes it
    adds; `images` are float HWC in [0, 1] (N, H, W, 3)."""
    from deploy.predictors import input_codes

    wide = wide_weights(uint8, float_source)
    graph = read_tflite(uint8)
    references = float_references(float_source, images)
    codes = input_codes(images)
    base_db, base_bytes = _measure(uint8, None, codes, references)
    full_db, full_bytes = _measure(uint8, wide, codes, references)
    rows = []
    for op_index in progress(sorted(wide.twins), desc="16-bit per layer"):
        op = graph.operators[op_index]
        db, size = _measure(uint8, wide.only([op_index]), codes, references)
        weights = graph.tensors[op.inputs[1]]
        rows.append({"op": op_index, "opcode": op.opcode, "weights": weights.name,
                     "weight_shape": list(weights.shape), "sqnr_db": round(db, 3),
                     "gain_db": round(db - base_db, 3), "extra_bytes": size - base_bytes,
                     "gain_db_per_kib": round((db - base_db) / max(size - base_bytes, 1) * 1024, 4)})
    return {"images": len(images), "metric": "model output SQNR (dB) vs the float model that was quantized, NumPy "
                                             "KPU simulator",
            "all_8bit": {"sqnr_db": round(base_db, 3), "weight_bytes": base_bytes},
            "all_16bit": {"sqnr_db": round(full_db, 3), "weight_bytes": full_bytes,
                          "gain_db": round(full_db - base_db, 3), "extra_bytes": full_bytes - base_bytes},
            "layers": rows,
            "note": "a per-layer mix runs only in the simulator: kpu.c sets eight_bit_mode once per model from the "
                    "header; shipping one needs a runtime that sets it per layer"}


def plot_sensitivity(result: dict[str, Any], png: Path, headline: str = "") -> None:
    """Bars of each layer's SQNR gain alone at 16-bit, labelled with the bytes it adds; `headline` leads the
    title."""
    from pipeline.plotting import new_figure, save_figure

    rows = result["layers"]
    fig, ax = new_figure(max(8.0, 0.45 * len(rows)), 4.5)
    labels = [f"#{r['op']} {r['opcode'].replace('_2D', '').lower()}" for r in rows]
    ax.bar(labels, [r["gain_db"] for r in rows], color="tab:blue")
    for x, r in enumerate(rows):
        ax.text(x, r["gain_db"], f"+{r['extra_bytes'] / 1024:.1f}K", ha="center", va="bottom", fontsize=7,
                rotation=90)
    full = result["all_16bit"]
    ax.axhline(full["gain_db"], color="black", linestyle="--",
               label=f"all layers 16-bit: {full['gain_db']:+.2f} dB, +{full['extra_bytes'] / 1024:.0f} KiB")
    ax.margins(y=0.15)  # room for the byte labels
    ax.set_ylabel("output SQNR gain over all-8-bit (dB)")
    ax.set_title((f"{headline}\n" if headline else "") + f"16-bit weights for one layer at a time (all-8-bit "
                 f"{result['all_8bit']['sqnr_db']:.2f} dB, {result['images']} images; simulator only: kpu.c loads "
                 "one width per model)", fontsize=9)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.legend(fontsize=8)
    save_figure(fig, png)
