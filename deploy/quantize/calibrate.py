"""Apply the project's activation ranges to a converted uint8 TFLite: statistics from the float model, one range per
tie group by the chosen method, then the flatbuffer rewritten so LiteRT and our K210 compiler use exactly them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.k210.compiler.tflite_graph import Graph, read_tflite
from deploy.quantize import graph as qgraph
from deploy.quantize.patch import Rewrite, rewrite
from deploy.quantize.ranges import choose_range, int8_params, represented
from deploy.quantize.statistics import check_images, histograms

INT32 = np.iinfo(np.int32)
CONVERTER_SAMPLE = 8  # images the converter calibrates on when the project's ranges replace all of its own


@dataclass
class Calibrated:
    """The rewritten TFLite, per activation tensor name the range chosen and the (scale, zero point) set, and the
    float TFLite of exactly the model that was quantized (BN folded, equalised, QAT-trained as asked): the source of
    a 16-bit-weight kmodel's weights (compile.weight_bits)."""

    data: bytes
    ranges: dict[str, dict[str, Any]]
    float_data: bytes


def _sources(plan: qgraph.QuantPlan, members: list[int], learned: dict[int, tuple[float, float]]) -> list[int]:
    """The float tensors whose ranges make a tie group's: its learned members' when it has any, else all."""
    twins = [plan.twins[t] for t in members if t in plan.twins]
    return [t for t in twins if t in learned] or twins


def group_ranges(plan: qgraph.QuantPlan, hists: dict, method: str, percentile: float,
                 learned: dict[int, tuple[float, float]] | None = None) -> dict[int, tuple[float, int]]:
    """(scale, zero point) of every int8 activation and the raw input: fixed tensors keep theirs; a tie group takes
    the union of its members' ranges (or a fixed member's quantization): the learned ones (float tensor ->
    (low, high), from QAT) when it has any, else the ones `method` chooses."""
    learned = learned or {}
    params: dict[int, tuple[float, int]] = dict(plan.fixed)
    for members in plan.groups:
        fixed = [t for t in members if t in plan.fixed]
        if fixed:
            choice = plan.fixed[fixed[0]]
        else:
            chosen = [learned[t] if t in learned else choose_range(hists[t], method, percentile)
                      for t in _sources(plan, members, learned)]
            if not chosen:
                continue  # no float twin: keep the converter's quantization
            choice = int8_params(min(lo for lo, _ in chosen), max(hi for _, hi in chosen))
        params.update({t: choice for t in members})
    return params


def _biases(plan: qgraph.QuantPlan, quant: Graph, floating: Graph, params: dict[int, tuple[float, int]]
            ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each conv / FC bias re-quantized from the float model's bias: round(b / (s_in * s_w[c]))."""
    out = {}
    for op in quant.operators:
        if op.opcode not in qgraph.WEIGHTED_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        if op.inputs[0] not in params:
            continue
        twin = plan.op_twins[op.index]
        float_bias = floating.tensors[twin.inputs[2]].data if len(twin.inputs) > 2 and twin.inputs[2] >= 0 else None
        bias = quant.tensors[op.inputs[2]]
        if float_bias is None:  # not a constant in the float model: dequantize the converter's
            float_bias = bias.data.astype(np.float64) * bias.scale
        weight_scales = quant.tensors[op.inputs[1]].scale.astype(np.float64)
        scales = params[op.inputs[0]][0] * np.broadcast_to(weight_scales, bias.scale.shape)
        values = np.clip(np.round(np.asarray(float_bias, np.float64).reshape(-1) / scales), INT32.min, INT32.max)
        out[op.inputs[2]] = (values.astype(np.int32), scales.astype(np.float32))
    return out


def apply_ranges(uint8_bytes: bytes, float_bytes: bytes, images: Sequence[np.ndarray], method: str,
                 percentile: float, learned: dict[int, tuple[float, float]] | None = None) -> Calibrated:
    """The converted model with every int8 activation quantized to its learned range (float tensor -> (low, high))
    or else to the range `method` picks on `images`."""
    quant, floating = read_tflite(uint8_bytes), read_tflite(float_bytes)
    plan = qgraph.plan(quant, floating)
    learned = learned or {}
    needed = sorted({t for members in plan.groups if not any(m in plan.fixed for m in members)
                     for t in _sources(plan, members, learned) if t not in learned})
    hists = histograms(float_bytes, needed, images) if needed else {}
    params = group_ranges(plan, hists, method, percentile, learned)
    for output, source in plan.outputs.items():
        scale, zero = params.get(source, (float(quant.tensors[source].scale[0]),
                                          int(quant.tensors[source].zero_point[0])))
        params[output] = (scale, zero + 128)  # the uint8 model output: the same codes shifted by 128
    data = rewrite(uint8_bytes, Rewrite(activations=params, biases=_biases(plan, quant, floating, params)))
    ranges = {}
    for t, (scale, zero) in params.items():
        tensor = quant.tensors[t]
        low, high = represented(scale, zero - (128 if tensor.dtype == "uint8" else 0))
        ranges[tensor.name] = {"tensor": t, "scale": scale, "zero_point": zero, "low": low, "high": high,
                               "converter_scale": float(tensor.scale[0]),
                               "converter_zero_point": int(tensor.zero_point[0])}
        twin = plan.twins.get(plan.outputs.get(t, t))
        if twin in learned:
            ranges[tensor.name]["learned"] = list(learned[twin])
    return Calibrated(data=data, ranges=ranges, float_data=float_bytes)


def converter_ranges(data: bytes) -> dict[str, dict[str, Any]]:
    """The (scale, zero point) and real range of every int8 activation as a TFLite file holds them."""
    graph = read_tflite(data)
    out = {}
    for t in qgraph.activations(graph):
        tensor = graph.tensors[t]
        scale, zero = float(tensor.scale[0]), int(tensor.zero_point[0])
        low, high = represented(scale, zero)
        out[tensor.name] = {"tensor": t, "scale": scale, "zero_point": zero, "low": low, "high": high}
    return out


def quantize_keras(model, float_bytes: bytes, images: Sequence[np.ndarray], method: str, percentile: float,
                   cle: bool = False, fine_tune: Callable[[Any], None] | None = None,
                   qat_kurtosis: float = 0.0) -> Calibrated:
    """The uint8 TFLite of a Keras model with its activation ranges chosen by `method` ("tflite": the converter's
    min/max on every image; otherwise the converter calibrates on a few images and apply_ranges replaces them).
    `float_bytes` is the model's float TFLite; with `cle` the model is BN-folded and equalised first (and its float
    TFLite made again, since its activations change). With `fine_tune` (a function training a Keras model in place)
    the result is quantization-aware trained from there (deploy/quantize/qat.py): BN folded, the PTQ ranges the
    clips' start, the learned clips the ranges written; `qat_kurtosis` weights a kurtosis penalty on the kernels
    during it (deploy/quantize/fake_quant.kurtosis_penalty)."""
    from deploy.tflite import convert_float, convert_uint8

    check_images(images, tuple(int(v) for v in model.input_shape[1:]))
    if fine_tune is not None:
        from deploy.quantize.qat import check_supported

        check_supported(model)
    if cle:
        from deploy.quantize.cle import equalized

        model, _ = equalized(model)
        float_bytes = convert_float(model)
    elif fine_tune is not None:
        from deploy.quantize.fold_bn import fold_batch_norm

        model = fold_batch_norm(model)
        float_bytes = convert_float(model)
    if method == "tflite":
        data = convert_uint8(model, list(images))
        ptq = Calibrated(data=data, ranges=converter_ranges(data), float_data=float_bytes)
    else:
        converted = convert_uint8(model, list(images[:CONVERTER_SAMPLE]))
        ptq = apply_ranges(converted, float_bytes, images, method, percentile)
    if fine_tune is None:
        return ptq
    from deploy.quantize.qat import fine_tuned

    model, float_bytes, learned = fine_tuned(model, float_bytes, ptq.data, images, fine_tune, qat_kurtosis)
    converted = convert_uint8(model, list(images[:CONVERTER_SAMPLE]))
    return apply_ranges(converted, float_bytes, images, "minmax" if method == "tflite" else method, percentile,
                        learned)
