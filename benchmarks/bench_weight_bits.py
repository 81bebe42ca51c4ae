"""16-bit KPU weights on the face-mask detector (issue #14, compile.weight_bits): the kmodel with every layer's weights
16-bit against the 8-bit baseline compiled in the same run from the same export (model_uint8.tflite and its
model_quantized_float.tflite: the same activation ranges, QAT and CLE as configured): val AP@0.5 in the KPU simulator
(the C runtime, eval.kmodel_engine: fast), kmodel bytes, and the calibrated cycle model's latency estimate (also with
16-bit weight bytes charged at the 8-bit per-byte rate, since the model's two rates come from different kernel sizes,
see cycles.py). Then the per-layer sensitivity (deploy/k210/compiler/weight_sensitivity.py): each layer alone 16-bit
in the NumPy simulator, output SQNR against the float model on SENSITIVITY_IMAGES training images, and the bytes it
adds. Needs a trained build/facemask/model.keras (the product build root's; exported into the bench's own stages
folder when that export is not current: about 7 minutes with QAT). Runs only when asked (`invoke bench --only
weight_bits`): about 10-20 minutes on 2 shared cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_quantization import CONFIG, Bench
from benchmarks.runner import trained_build
from pipeline.config import SHARED_DATA, load_config
from pipeline.errors import PipelineError

SENSITIVITY_IMAGES = 4
PAYS_DB = 0.1  # a layer "pays" when 16-bit weights for it alone raise the output SQNR by at least this much
ON_REQUEST_ONLY = True


def kmodel_rows(bench: Bench, uint8: Path, float_source: Path) -> list[dict[str, Any]]:
    """The 8-bit and the 16-bit kmodel of one export: AP@0.5 on val, bytes, latency estimates."""
    from deploy.k210.compiler.cycles import estimate_kmodel
    from deploy.k210.compiler.driver import compile_tflite
    from deploy.predictors import kmodel_predictor
    from pipeline.atomic import write_bytes

    rows = []
    for bits in (8, 16):
        compiled = compile_tflite(uint8, weight_bits=bits, float_source=float_source if bits == 16 else None)
        path = bench.work / f"weights{bits}.kmodel"
        write_bytes(path, compiled.data)
        ap = bench.ap50(kmodel_predictor(path, bench.output_hwc, "fast"), f"kmodel {bits}-bit weights")
        rows.append({"weight_bits": bits, "kmodel_ap50": round(ap, 4), "kmodel_bytes": len(compiled.data),
                     "latency_ms_estimate": round(estimate_kmodel(compiled.model).total_us / 1000, 3),
                     "latency_ms_estimate_at_8bit_byte_rate": round(
                         estimate_kmodel(compiled.model, weight_rate_bits=8).total_us / 1000, 3)})
    base = rows[0]
    for row in rows:
        row["ap50_minus_baseline"] = round(row["kmodel_ap50"] - base["kmodel_ap50"], 4)
        row["bytes_ratio"] = round(row["kmodel_bytes"] / base["kmodel_bytes"], 3)
        row["latency_ratio"] = round(row["latency_ms_estimate"] / base["latency_ms_estimate"], 3)
        row["latency_ratio_at_8bit_byte_rate"] = round(row["latency_ms_estimate_at_8bit_byte_rate"]
                                                       / base["latency_ms_estimate_at_8bit_byte_rate"], 3)
    return rows


def mix_row(bench: Bench, uint8: Path, float_source: Path, sensitivity: dict[str, Any], images: np.ndarray
            ) -> dict[str, Any]:
    """The layers that pay (PAYS_DB) 16-bit together, the rest 8-bit: output SQNR and AP@0.5 in the NumPy simulator
    (an in-memory model: kpu.c could not load it), weight bytes added."""
    from deploy.k210.compiler.driver import wide_weights
    from deploy.k210.compiler.weight_sensitivity import float_references, mixed_model, output_sqnr
    from deploy.predictors import input_codes, kmodel_predictor

    ops = [r["op"] for r in sensitivity["layers"] if r["gain_db"] >= PAYS_DB]
    model, _ = mixed_model(uint8, wide_weights(uint8, float_source).only(ops))
    extra = sum(r["extra_bytes"] for r in sensitivity["layers"] if r["op"] in ops)
    sqnr = output_sqnr(model, input_codes(images), float_references(float_source, images))
    ap = bench.ap50(kmodel_predictor(model, bench.output_hwc, "reference"), "kmodel mix (NumPy simulator)")
    return {"ops": ops, "rule": f"gain alone >= {PAYS_DB} dB", "sqnr_db": round(sqnr, 3),
            "gain_db": round(sqnr - sensitivity["all_8bit"]["sqnr_db"], 3), "extra_weight_bytes": extra,
            "kmodel_ap50_reference_simulator": round(ap, 4),
            "loadable": "no: kpu.c sets eight_bit_mode once per model; a runtime would have to set it per layer"}


def run(out_dir: Path) -> dict[str, Any]:
    """Whole-model 8 vs 16-bit rows and the per-layer sensitivity, with the per-layer PNG."""
    if not (SHARED_DATA / "facemask").is_dir():
        return {"skipped": f"the face-mask data is absent ({SHARED_DATA / 'facemask'})"}
    from deploy.export import UINT8_NAME, export_stage
    from deploy.k210.compiler.weight_sensitivity import layer_sensitivity, plot_sensitivity
    from deploy.k210.compiler.wide_weights import QUANTIZED_FLOAT_NAME
    from models.evaluate import keras_predictor

    cfg = load_config(CONFIG)
    build, trained = cfg.build_dir, trained_build(cfg) / "model.keras"
    if not trained.is_file():
        raise PipelineError("no trained face-mask detector", path=trained,
                            expected="`invoke train --config configs/facemask.yaml` (or copy a finished run's "
                                     "build/facemask/ there)")
    export_stage(cfg, model_path=trained)
    uint8, float_source = build / UINT8_NAME, build / QUANTIZED_FLOAT_NAME
    bench = Bench(out_dir / "weight_bits")
    keras_ap = bench.ap50(keras_predictor(bench.model), "keras")
    rows = kmodel_rows(bench, uint8, float_source)
    images = np.stack(bench.calibration(SENSITIVITY_IMAGES))
    sensitivity = layer_sensitivity(uint8, float_source, images)
    ranked = sorted(sensitivity["layers"], key=lambda r: -r["gain_db"])
    result = {"model": str(trained), "val_images": len(bench.val.images),
              "quantize": {key: cfg.values["quantize"][key] for key in ("method", "cle", "qat_epochs")},
              "keras_ap50": round(keras_ap, 4), "baseline": "weight_bits 8", "kmodels": rows,
              "sensitivity": sensitivity, "top_layers": [r["op"] for r in ranked[:5]],
              "mix": mix_row(bench, uint8, float_source, sensitivity, images),
              "loadable": "the 16-bit kmodel is all-16-bit (header flags bit 0 = 0): kpu.c loads it; per-layer "
                          "mixes are measured in the simulator only"}
    wide = rows[1]
    plot_sensitivity(sensitivity, out_dir / "weight_bits.png",
                     f"whole model: AP@0.5 {rows[0]['kmodel_ap50']:.4f} (8-bit) -> {wide['kmodel_ap50']:.4f} "
                     f"(16-bit), {wide['bytes_ratio']:.2f}x bytes")
    return result
