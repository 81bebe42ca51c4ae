"""The recognizer's embedders (models.recognizer.embedder) compiled for the K210 and run in the simulator against
LiteRT's uint8 model, with seeded random weights, non-trivial BN statistics and a seeded random calibration set.

What agrees and why:
- The KPU part, everything up to the FC's input (the head_reduce map), is compared byte for byte with LiteRT's
  tensor of the FC input (kept with experimental_preserve_all_tensors).
- The FC runs by default on the KPU (4x4-padded 1x1 conv, exact integer accumulator like LiteRT's int8 FC); with
  kpu_fc=False as a float32 CPU layer between DEQUANTIZE and QUANTIZE, which only parts from LiteRT's exact int32
  sum and fixed-point requantization where the float32 sum lands next to a rounding boundary. Either way each
  embedding code is within 1 output quantization step of LiteRT's.
"""

from __future__ import annotations

import numpy as np
import pytest

from deploy.k210.compiler.driver import Compiled, compile_tflite
from deploy.k210.compiler.program import CpuStep
from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.k210.format.kmodel import LayerType
from deploy.k210.sim.simulator import SimResult, simulate
from tests.kpu_models import (
    EMBEDDING,
    HEAD_CHANNELS,
    KPU_FC,
    ODD_STRIDE,
    SMALL_EMBEDDER,
    embedder_config,
    embedder_net,
    litert_outputs,
    random_images,
    tflite,
)

CASES = [("mobilefacenet", 112), ("mobilefacenet", 128), ("skip_darknet19", 128)]


def embedder_tflite(family: str, side: int) -> bytes:
    """The uint8 TFLite of a w0.125 embedder (built once per process)."""
    return tflite(embedder_net(family, side))


def litert_fc_input_and_output(data: bytes, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(FC input codes as uint8 in TFLite's flatten order, embedding codes, embedding quantization)."""
    from ai_edge_litert.interpreter import Interpreter

    graph = read_tflite(data)
    fc = next(op for op in graph.operators if op.opcode == "FULLY_CONNECTED")
    interpreter = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    fc_input = interpreter.get_tensor(fc.inputs[0]).reshape(-1).astype(np.int16) + 128
    output = interpreter.get_output_details()[0]
    return fc_input.astype(np.uint8), interpreter.get_tensor(output["index"]).reshape(-1), output["quantization"]


def sim_fc_input(compiled: Compiled, result: SimResult) -> np.ndarray:
    """The uint8 map the FC's first layer (K210_ADD_PADDING, or DEQUANTIZE for the float FC) reads, in TFLite's
    flatten order (HWC)."""
    steps = compiled.program.steps
    first = next(i for i, s in enumerate(steps) if isinstance(s, CpuStep) and "FULLY_CONNECTED" in s.source)
    name = steps[first].inputs[0]
    producer = max(i for i in range(first) if steps[i].output == name)
    return result.layers[producer].output.transpose(1, 2, 0).reshape(-1)


@pytest.mark.slow
@pytest.mark.parametrize(("family", "side"), CASES)
def test_embedder_matches_litert(family, side):
    """The KPU part up to the FC input is byte-exact; the FC, a KPU 1x1 conv in the 4x4-padded form, requantizes
    like every KPU conv (exact integer accumulator, 23-bit multiplier), so its embedding codes equal LiteRT's except
    at rare requantization ties (within 1 step, >= 99 % equal). The float CPU FC: within 1 step, >= 95 % equal."""
    data = embedder_tflite(family, side)
    for kpu_fc in (True, False):
        compiled = compile_tflite(data, kpu_fc=kpu_fc)
        types = [layer.type for layer in compiled.model.layers]
        assert types[0] == LayerType.K210_CONV
        assert (LayerType.FULLY_CONNECTED in types) != kpu_fc and (LayerType.K210_ADD_PADDING in types) == kpu_fc
        steps_off = []
        for image in random_images(side, 4, seed=9):
            result = simulate(compiled.data, image.transpose(2, 0, 1).copy())
            fc_in, ref, (scale, zero) = litert_fc_input_and_output(data, image)
            np.testing.assert_array_equal(sim_fc_input(compiled, result), fc_in)
            ours = np.clip(np.round(result.outputs[0].reshape(-1) / scale + zero), 0, 255).astype(np.int64)
            steps_off.append(np.abs(ours - ref.astype(np.int64)))
            real_ours, real_ref = ours - zero, ref.astype(np.int64) - zero
            assert real_ours @ real_ref / (np.linalg.norm(real_ours) * np.linalg.norm(real_ref)) > 0.9999
        off = np.concatenate(steps_off)
        assert off.max() <= 1 and np.mean(off == 0) >= (0.99 if kpu_fc else 0.95), (kpu_fc, np.mean(off == 0))


@pytest.mark.parametrize(("family", "side"), CASES)
def test_the_budget_estimate_bounds_the_compiled_kmodel(family, side):
    """train.budget_mib refuses on models.budget's kmodel size: never below what the compiler writes (headers,
    padding and the layers it adds included), and not far above it (measured 2-16 % over at width 0.125)."""
    from models.budget import measure_config
    from models.recognizer.embedder import build_embedder

    estimate = measure_config(embedder_config(family, side), 0,
                              build=lambda cfg, _: build_embedder(cfg, EMBEDDING, HEAD_CHANNELS)).uint8_bytes
    size = len(compile_tflite(embedder_tflite(family, side)).data)
    assert size <= estimate <= 1.2 * size, (size, estimate)


def test_stride_two_on_odd_sizes_is_decimated_on_the_cpu_bit_exactly():
    """The KPU's stride-2 pools floor 7 to 3, TFLite's centred windows give 4: the convs run at full resolution and
    a flatten + pixel gather + flatten on the CPU keeps pixels 0, 2, 4, 6; the result matches LiteRT exactly."""
    images = ODD_STRIDE.calibration()
    data = tflite(ODD_STRIDE)
    compiled = compile_tflite(data)
    for image in images:
        (ref, (scale, zero)), = litert_outputs(data, image)
        sim = simulate(compiled.data, image.transpose(2, 0, 1).copy()).outputs[0].reshape(-1)
        np.testing.assert_array_equal(np.round(sim / scale + zero).astype(np.int64),
                                      ref.transpose(2, 0, 1).reshape(-1).astype(np.int64))
    types = [layer.type for layer in compiled.model.layers]
    assert types.count(LayerType.QUANTIZED_TENSORFLOW_FLATTEN) == 4 and types.count(LayerType.QUANTIZED_CONCAT) == 2
    gathers = [s for s in compiled.program.steps if isinstance(s, CpuStep) and
               s.layer_type == LayerType.QUANTIZED_CONCAT]
    assert [compiled.program.tensors[s.output].shape for s in gathers] == [(49, 1, 8), (16, 1, 8)]


def test_compile_report_of_an_embedder_gives_time_per_face_and_cpu_layers():
    """A vector output is an embedder: no FPS, no detector section (even beside a model_meta.json without anchors),
    but the per-face estimate, the KPU RAM peak, the kmodel size and each CPU layer's cost."""
    from pathlib import Path

    from deploy.k210.compiler.compile_report import build_report, format_report

    data = tflite(SMALL_EMBEDDER)
    compiled = compile_tflite(data, kpu_fc=False)
    report = build_report(compiled, source=Path("rec.tflite"), budget_mib=5.5, meta={"family": "mobilefacenet"})
    assert report["kind"] == "embedder" and "detector" not in report and report["totals"]["fps"] is None
    section = report["embedder"]
    assert section["embedding_size"] == 16 and section["meta"] == {"family": "mobilefacenet"}
    cpu_rows = [r for r in report["layers"] if r["unit"] == "cpu"]
    assert [r["type"] for r in section["cpu_layers"]] == [r["type"] for r in cpu_rows]
    fc = next(r for r in section["cpu_layers"] if r["type"] == "FULLY_CONNECTED")
    assert fc["macs"] == 4 * 8 * 8 * 16 and fc["weight_bytes"] == 4 * (4 * 8 * 8 * 16 + 16)
    total_us = sum(r["time_us"] for r in report["layers"]) + report["totals"]["input_transfer_us"]
    assert report["totals"]["input_transfer_us"] > 0  # the 3x16x16 crop's upload to KPU RAM
    assert section["time_per_face_ms_estimate"] == pytest.approx(total_us / 1000, abs=1e-3)
    assert section["cpu_time_ms_estimate"] + section["kpu_time_ms_estimate"] + section[
        "input_transfer_ms_estimate"] == pytest.approx(section["time_per_face_ms_estimate"], abs=3e-3)
    assert report["totals"]["kpu_ram_peak_bytes"] > 0 and report["kmodel_bytes"] == len(compiled.data)
    text = format_report(report)
    assert "time per face" in text and "estimate" in text and "FPS" not in text
    on_kpu = build_report(compile_tflite(data), source=Path("rec.tflite"), budget_mib=5.5, meta=None)
    assert [r["type"] for r in on_kpu["embedder"]["cpu_layers"]] == ["K210_ADD_PADDING", "K210_REMOVE_PADDING",
                                                                      "DEQUANTIZE"]
    assert on_kpu["kmodel_bytes"] < report["kmodel_bytes"]
    assert section["flip_average"] is False and section["runs_per_face"] == 1
    flipped = build_report(compiled, source=Path("rec.tflite"), budget_mib=5.5, meta=None, flip=True)["embedder"]
    assert flipped["flip_average"] is True and flipped["runs_per_face"] == 2
    assert flipped["time_per_face_ms_estimate"] == pytest.approx(2 * total_us / 1000, abs=1e-3)  # two KPU runs
    assert flipped["kpu_time_ms_estimate"] == section["kpu_time_ms_estimate"]  # one run's parts
    assert "2 runs (the crop and its mirror image)" in format_report(
        build_report(compiled, source=Path("rec.tflite"), budget_mib=5.5, meta=None, flip=True))


def test_fully_connected_on_the_kpu_matches_litert_exactly():
    """Flatten + Dense as ADD_PADDING, a 1x1 KPU conv over the 4x4-padded vector and REMOVE_PADDING: uint8 weights
    (4x smaller than the float32 CPU layer's) and the conv's integer arithmetic, equal to LiteRT's int8 FC here."""
    images = KPU_FC.calibration()
    data = tflite(KPU_FC)
    compiled, float_fc = compile_tflite(data), compile_tflite(data, kpu_fc=False)
    fc = next(s for s in compiled.program.steps if getattr(s, "source", "").endswith("FULLY_CONNECTED")
              and getattr(s, "kernel", 0) == 1)
    assert fc.in_shape == (8 * 8 * 12, 4, 4) and fc.out_shape == (40, 4, 4) and fc.weights.size == 40 * 768
    assert len(float_fc.data) - len(compiled.data) > 2.9 * 40 * 768  # 4 B -> 1 B per weight, less BN words
    for image in images:
        (ref, (scale, zero)), = litert_outputs(data, image)
        sim = simulate(compiled.data, image.transpose(2, 0, 1).copy()).outputs[0].reshape(-1)
        np.testing.assert_array_equal(np.round(sim / scale + zero).astype(np.int64), ref.astype(np.int64))
