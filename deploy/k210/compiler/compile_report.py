"""compile_report.json content and its per-layer bar chart: shapes, KPU RAM, weight bytes, MACs, estimated
cycles and latency per layer, totals, and the model size against the flash budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.cycles import (
    KPU_HZ,
    MODEL_FIT_ERROR,
    Estimate,
    calibration,
    calibration_note,
    estimate_kmodel,
    kpu_weight_bytes,
    line_steps,
)
from deploy.k210.compiler.driver import Compiled
from deploy.k210.compiler.program import KpuStep
from deploy.k210.format.kmodel import KModel
from hardware.k210 import KPU_LINE_BYTES, MIB, map_lines


def _layer_rows(compiled: Compiled, estimate: Estimate) -> list[dict[str, Any]]:
    rows = []
    tensors = compiled.program.tensors
    steps = zip(compiled.program.steps, compiled.model.layers, estimate.layers, strict=True)
    for index, (step, layer, (cycles, unit, us)) in enumerate(steps):
        out = tensors[step.output]
        row: dict[str, Any] = {
            "index": index, "type": layer.type.name, "source": step.source, "unit": unit,
            "inputs": [list(tensors[name].shape) for name in step.inputs], "output": list(out.shape),
            "macs": int(step.macs), "cycles": cycles, "time_us": round(us, 2),
            "time_us_uncertainty": round(us * MODEL_FIT_ERROR, 2),
        }
        if isinstance(step, KpuStep):
            row.update(kernel=step.kernel, depthwise=step.depthwise, pool_type=step.pool_type,
                       weight_bytes=kpu_weight_bytes(step),
                       line_steps=line_steps(step.in_shape, step.out_shape[0], step.depthwise),
                       kpu_ram_bytes=KPU_LINE_BYTES * (map_lines(*step.in_shape) + map_lines(*step.out_shape)),
                       main_memory_output=step.main_out)
        else:
            tables = [v for v in vars(layer.body).values() if isinstance(v, np.ndarray)]
            row.update(weight_bytes=int(sum(v.nbytes for v in tables)), kpu_ram_bytes=0)
        rows.append(row)
    return rows


def is_embedder(compiled: Compiled) -> bool:
    """Whether the model's one output is a vector (an embedding), not a detector's grid map."""
    program = compiled.program
    return len(program.outputs) == 1 and program.tensors[program.outputs[0]].shape[1:] == (1, 1)


def _embedder_section(rows: list[dict[str, Any]], output_shape: tuple[int, int, int], estimate: Estimate,
                      meta: dict | None, centre: np.ndarray | None, flip: bool) -> dict[str, Any]:
    """What an embedder's deployment needs: the per-face time estimate (two model runs with the flip policy) and
    where the CPU spends one run's, the flip policy and the embedding centre the firmware subtracts
    (models/recognizer/centre.py) when it has one."""
    cpu = [r for r in rows if r["unit"] == "cpu"]
    cpu_us = sum(r["time_us"] for r in cpu)
    runs = 2 if flip else 1
    total_us = runs * estimate.total_us
    section: dict[str, Any] = {
        "embedding_size": output_shape[0],
        "flip_average": flip,
        "runs_per_face": runs,
        "time_per_face_ms_estimate": round(total_us / 1000, 3),
        "faces_per_second_estimate": round(1e6 / total_us, 1) if total_us else None,
        "kpu_time_ms_estimate": round(sum(r["time_us"] for r in rows if r["unit"] == "kpu") / 1000, 3),
        "cpu_time_ms_estimate": round(cpu_us / 1000, 3),
        "input_transfer_ms_estimate": round(estimate.input_us / 1000, 3),
        "cpu_layers": [{key: r[key] for key in ("index", "type", "source", "macs", "weight_bytes", "cycles",
                                                "time_us")} for r in cpu],
        "estimate": f"{calibration_note()}; not a measurement; time per face = runs_per_face model runs, each "
                    "with its input transfer (the kpu/cpu/input times below are one run's); excludes the crop, "
                    "resize, mirror and L2 norms",
    }
    if meta is not None:
        section["meta"] = meta
    if centre is not None:
        section["centre"] = [float(v) for v in np.asarray(centre, np.float32)]
    return section


def build_report(compiled: Compiled, *, source: Path, budget_mib: float, meta: dict | None,
                 centre: np.ndarray | None = None, flip: bool = False) -> dict[str, Any]:
    """The report of a compiled model; `meta` (model_meta.json) becomes its "detector" section when it has
    anchors, and goes into the "embedder" section of a model whose output is a vector, with its embedding
    `centre` and flip policy (`flip`: two runs per face)."""
    estimate = estimate_kmodel(compiled.model)
    rows = _layer_rows(compiled, estimate)
    total_us = estimate.total_us
    kpu_us = sum(r["time_us"] for r in rows if r["unit"] == "kpu")
    size = len(compiled.data)
    program = compiled.program
    input_tensor = program.tensors[program.input]
    embedder = is_embedder(compiled)
    report: dict[str, Any] = {
        "source": str(source),
        "kind": "embedder" if embedder else "detector" if meta is not None and "anchors" in meta else "map",
        "kmodel_bytes": size,
        "kmodel_mib": round(size / MIB, 4),
        "weight_bits": 8 if compiled.model.eight_bit_weights else 16,
        "budget_mib": budget_mib,
        "fits_budget": size <= budget_mib * MIB,
        "input": {"shape": list(input_tensor.shape), "layout": "CHW", "dtype": "uint8",
                  "quantization": {"scale": input_tensor.quant.scale, "zero_point": input_tensor.quant.zero_point}},
        "outputs": [{"shape": list(program.tensors[name].shape), "layout": "CHW", "dtype": "float32",
                     "main_address": compiled.plan.main(name), "bytes": program.tensors[name].size,
                     "quantization": {"scale": q.scale, "zero_point": q.zero_point}}
                    for name, q in zip(program.outputs, program.output_quant, strict=True)],
        "layers": rows,
        "totals": {
            "layers": len(rows), "kpu_layers": sum(r["unit"] == "kpu" for r in rows),
            "cpu_layers": sum(r["unit"] == "cpu" for r in rows),
            "weight_bytes": sum(r["weight_bytes"] for r in rows), "macs": sum(r["macs"] for r in rows),
            "cycles": sum(r["cycles"] for r in rows), "kpu_time_ms": round(kpu_us / 1000, 3),
            "latency_ms": round(total_us / 1000, 3),
            "latency_uncertainty_ms": round(estimate.uncertainty_us / 1000, 3),
            "cpu_time_ms": round((total_us - kpu_us - estimate.input_us) / 1000, 3),
            "input_transfer_us": round(estimate.input_us, 2),
            "kpu_hz": KPU_HZ,
            "fps": None if embedder or not total_us else round(1e6 / total_us, 1),
            "kpu_ram_peak_bytes": compiled.plan.kpu_lines_used * KPU_LINE_BYTES,
            **({} if compiled.model.eight_bit_weights else {"latency_ms_at_8bit_weight_rate": round(
                estimate_kmodel(compiled.model, weight_rate_bits=8).total_us / 1000, 3)}),
            "main_memory_bytes": compiled.model.main_mem_usage,
        },
        "cycle_model": f"{calibration_note()} (deploy/k210/compiler/cycles.py, data hardware/k210_timings.json)",
        "calibration": calibration(),
    }
    if embedder:
        report["embedder"] = _embedder_section(rows, program.tensors[program.outputs[0]].shape, estimate, meta,
                                               centre, flip)
    elif report["kind"] == "detector":
        report["detector"] = meta
    return report


def format_report(report: dict[str, Any]) -> str:
    """The per-layer table and totals as printed by `invoke compile`."""
    lines = [f"{'#':>3} {'type':<28} {'output CxHxW':<14} {'KPU RAM':>9} {'weights':>9} {'MACs':>11} "
             f"{'cycles':>10} {'us':>9}  source"]
    for r in report["layers"]:
        shape = "x".join(str(v) for v in r["output"])
        lines.append(f"{r['index']:>3} {r['type']:<28} {shape:<14} {r['kpu_ram_bytes']:>9} {r['weight_bytes']:>9} "
                     f"{r['macs']:>11} {r['cycles']:>10} {r['time_us']:>9.1f}  {r['source']}")
    t = report["totals"]
    lines.append(f"totals: {t['layers']} layers ({t['kpu_layers']} KPU, {t['cpu_layers']} CPU), weights "
                 f"{t['weight_bytes']} B, {t['macs'] / 1e6:.1f} MMAC, KPU RAM peak {t['kpu_ram_peak_bytes']} B, "
                 f"main buffer {t['main_memory_bytes']} B")
    if "embedder" in report:
        e = report["embedder"]
        cpu = ", ".join(f"{r['type']} {r['time_us']:.1f} us" for r in e["cpu_layers"])
        runs = e.get("runs_per_face", 1)
        lines.append(f"estimated time per face {e['time_per_face_ms_estimate']} ms +- "
                     f"{round(runs * t['latency_uncertainty_ms'], 3)} ms ({runs} run{'s' * (runs > 1)}"
                     f"{' (the crop and its mirror image)' * (runs > 1)}, each KPU {e['kpu_time_ms_estimate']} ms, "
                     f"CPU {e['cpu_time_ms_estimate']} ms, input {t['input_transfer_us']:.0f} us) for a "
                     f"{e['embedding_size']}-value embedding; CPU layers: {cpu}")
    else:
        lines.append(f"estimated K210 latency {t['latency_ms']} ms +- {t['latency_uncertainty_ms']} ms (KPU "
                     f"{t['kpu_time_ms']} ms, CPU {t['cpu_time_ms']} ms, input {t['input_transfer_us']:.0f} us) = "
                     f"{t['fps']} FPS")
    if "latency_ms_at_8bit_weight_rate" in t:
        lines.append(f"16-bit weights: {t['latency_ms_at_8bit_weight_rate']} ms with their bytes charged at the 8-bit "
                     "fetch rate (the model's 16-bit rate comes from 3x3 layers, its 8-bit one from 1x1 layers: the "
                     "two widths' estimates are not comparable)")
    lines.append(report["cycle_model"])
    verdict = "fits" if report["fits_budget"] else "EXCEEDS"
    lines.append(f"kmodel {report['kmodel_bytes']} B = {report['kmodel_mib']} MiB: {verdict} the "
                 f"{report['budget_mib']} MiB budget")
    return "\n".join(lines)


def format_kmodel_timing(model: KModel) -> str:
    """The calibrated time of any kmodel V3 per layer and in total, as `invoke compile --inspect` prints it."""
    estimate = estimate_kmodel(model)
    lines = [f"estimated K210 time per layer ({calibration_note()}):",
             f"  {'input':<24} {'cpu':>4} {'':>10} {estimate.input_us:>9.1f} us  (input transfer to KPU RAM)"]
    for index, (layer, (cycles, unit, us)) in enumerate(zip(model.layers, estimate.layers, strict=True)):
        lines.append(f"  [{index:3d}] {layer.type.name:<18} {unit:>4} {cycles:>10} {us:>9.1f} us")
    lines.append(f"  total {estimate.label()}")
    return "\n".join(lines)


def plot_layers(report: dict[str, Any], path: Path) -> None:
    """Bar chart of estimated time per layer (KPU and CPU coloured apart), written atomically."""
    from pipeline.plotting import new_figure, save_figure

    rows = report["layers"]
    figure, axis = new_figure(max(6.0, 0.35 * len(rows)), 4)
    colours = ["tab:blue" if r["unit"] == "kpu" else "tab:orange" for r in rows]
    axis.bar(range(len(rows)), [r["time_us"] for r in rows], color=colours)
    axis.set_xticks(range(len(rows)), [f"{r['index']} {r['type'].replace('K210_', '')}" for r in rows],
                    rotation=90, fontsize=7)
    axis.set_ylabel("estimated time (us)")
    totals = report["totals"]
    axis.set_title(f"estimated K210 time per layer: {totals['latency_ms']} +- {totals['latency_uncertainty_ms']} ms "
                   "total incl. input (blue KPU, orange CPU)", fontsize=9)
    save_figure(figure, path)
