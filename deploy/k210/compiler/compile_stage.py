"""`invoke compile`: build/<config>/model_uint8.tflite -> model.kmodel + compile_report.json + compile_layers.png
through the stage manifest; `--inspect FILE` prints any kmodel V3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.k210.compiler.compile_report import MIB, build_report, format_kmodel_timing, format_report, plot_layers
from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.compiler.wide_weights import QUANTIZED_FLOAT_NAME
from deploy.k210.format.inspect import describe_kmodel
from deploy.k210.format.kmodel_io import load_kmodel
from models.recognizer.centre import CENTRE_NAME, embedding_centre, flip_average
from pipeline.atomic import write_bytes, write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.json_files import read_json_object
from pipeline.stage import StageResult, run_stage

KMODEL_NAME = "model.kmodel"
REPORT_NAME = "compile_report.json"
CHART_NAME = "compile_layers.png"


def inspect_kmodel(path: Path) -> str:
    """Every field of a kmodel V3, then its calibrated time per layer and in total."""
    model = load_kmodel(path)
    return describe_kmodel(model, title=str(path)) + "\n" + format_kmodel_timing(model)


def _model_meta(tflite: Path) -> dict[str, Any] | None:
    """model_meta.json beside the TFLite (a detector's head geometry), if there is one."""
    meta = tflite.parent / "model_meta.json"
    if not meta.is_file():
        return None
    return read_json_object(meta, what="model metadata", missing_hint="run `invoke train` first")


def compile_stage(cfg: Config, *, tflite: Path | None = None, budget_mib: float | None = None,
                  force: bool = False) -> StageResult:
    """Compile the uint8 TFLite of a pipeline config to a kmodel V3 with its report and chart; a recognizer's
    embedding centre (embedding_centre.json of `invoke export`) and flip policy go into the report's embedder
    section."""
    build = cfg.build_dir
    out_kmodel, out_report, out_chart = build / KMODEL_NAME, build / REPORT_NAME, build / CHART_NAME
    budget = float(budget_mib) if budget_mib is not None else cfg.compile.budget_mib
    source = Path(tflite) if tflite else build / "model_uint8.tflite"
    if not source.is_file():
        raise PipelineError("uint8 TFLite model not found", path=source,
                            expected="the export stage's output (invoke export) or --tflite FILE")
    meta = source.parent / "model_meta.json"
    fuse_leaky = cfg.compile.fuse_leaky
    weight_bits = cfg.compile.weight_bits
    float_source = source.parent / QUANTIZED_FLOAT_NAME
    if weight_bits == 16 and not float_source.is_file():
        raise PipelineError("16-bit weights need the float TFLite of the quantized model", path=float_source,
                            field="compile.weight_bits",
                            expected="the export stage's output beside the uint8 TFLite (`invoke export --force` "
                                     "writes it), or compile.weight_bits 8")
    centre = embedding_centre(cfg)  # refused here, before anything is written, when the export has not made it
    flip = flip_average(cfg)

    def work() -> dict[str, Any]:
        compiled = compile_tflite(source, fuse_leaky=fuse_leaky, weight_bits=weight_bits,
                                  float_source=float_source if weight_bits == 16 else None)
        report = build_report(compiled, source=source, budget_mib=budget, meta=_model_meta(source),
                              centre=centre, flip=flip)
        if not report["fits_budget"]:
            raise PipelineError(f"the kmodel is {len(compiled.data) / MIB:.2f} MiB, over the {budget} MiB budget",
                                path=source, field="compile.budget_mib",
                                expected="a smaller model (width multiplier, pruning) or a larger --budget")
        write_bytes(out_kmodel, compiled.data)
        write_json(out_report, report)
        plot_layers(report, out_chart)
        print(format_report(report))
        totals = report["totals"]
        return {"kmodel_bytes": report["kmodel_bytes"], "weight_bits": weight_bits, "layers": totals["layers"],
                "kpu_layers": totals["kpu_layers"], "latency_ms": totals["latency_ms"], "fps": totals["fps"],
                "kind": report["kind"]}

    inputs = [source] + ([meta] if meta.is_file() else []) + ([float_source] if weight_bits == 16 else []) \
        + ([build / CENTRE_NAME] if centre is not None else [])
    params = {"budget_mib": budget, "fuse_leaky": fuse_leaky} | ({"weight_bits": 16} if weight_bits == 16 else {}) \
        | ({"centre": True} if centre is not None else {}) | ({"flip_average": True} if flip else {})
    return run_stage(build, "compile", inputs=inputs, params=params,
                     outputs=[out_kmodel, out_report, out_chart], work=work, force=force, tools=["numpy", "tflite"])
