"""quantize.method: the activation ranges the project chooses reach the uint8 TFLite and the compiled kmodel exactly,
and LiteRT still agrees with our simulator on the rewritten model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.k210.format.kmodel import LayerType
from deploy.k210.format.kmodel_io import read_kmodel
from deploy.quantize import graph as qgraph
from deploy.quantize.calibrate import quantize_keras
from deploy.quantize.ranges import Histogram, choose_range, int8_params, kl_range, mse_range, percentile_range
from pipeline.errors import PipelineError
from tests.kpu_models import COMPILER_SUITE, compare, float_tflite, real_images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
METHODS = ("minmax", "percentile", "mse", "kl")
PERCENTILE = 99.9


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return real_images()


@pytest.fixture(scope="module")
def models(images):
    """name -> (Keras model, float TFLite bytes, {method: Calibrated}) for two small models."""
    floats = [image.astype(np.float32) / 255.0 for image in images]
    out = {}
    for name in ("conv_chain", "passthrough"):
        model = COMPILER_SUITE[name].with_settings(seed=20261122, bn_seed=None).build()
        float_bytes = float_tflite(model)
        out[f"model_{name}"] = (model, float_bytes, {m: quantize_keras(model, float_bytes, floats, m, PERCENTILE)
                                                     for m in ("tflite",) + METHODS})
    return out


def chosen(calibrated) -> dict[int, tuple[float, int]]:
    return {entry["tensor"]: (entry["scale"], entry["zero_point"]) for entry in calibrated.ranges.values()}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["model_conv_chain", "model_passthrough"])
def test_tflite_holds_the_chosen_ranges(models, name, method):
    _, float_bytes, results = models[name]
    graph = read_tflite(results[method].data)
    want = chosen(results[method])
    for t in qgraph.activations(graph):
        tensor = graph.tensors[t]
        assert (float(tensor.scale[0]), int(tensor.zero_point[0])) == want[t], tensor.name
    raw_input = graph.tensors[graph.inputs[0]]
    assert raw_input.zero_point[0] == 0 and raw_input.scale[0] == np.float32(1 / 255)  # raw RGB bytes
    for op in graph.operators:
        acts = [t for t in op.inputs + op.outputs if t >= 0 and graph.tensors[t].dtype == "int8"
                and graph.tensors[t].data is None]
        if op.opcode in qgraph.TIED_OPS:  # int8 kernels that need one quantization in and out
            assert len({want[t] for t in acts}) == 1, op.opcode
        if op.opcode == "QUANTIZE" and op.inputs[0] in graph.inputs:
            assert want[op.outputs[0]] == (float(np.float32(1 / 255)), -128)
    # every method clips inside the converter's min/max; minmax is the converter's on most tensors (the converter
    # also widens a LeakyReLU output feeding an ADD to the ADD's range)
    converter = chosen(results["tflite"])
    same = []
    for t, (scale, zero) in want.items():
        if graph.producer(t) is None or graph.producer(t).opcode == "QUANTIZE":
            continue  # the raw input and its int8 copy are fixed at 1/255
        c_scale, c_zero = converter[t]
        assert scale <= c_scale * 1.002
        same.append(scale == pytest.approx(c_scale, rel=2e-3) and abs(zero - c_zero) <= 1)
    if method == "minmax":
        assert np.mean(same) >= 0.75


@pytest.mark.parametrize("method", METHODS)
def test_biases_follow_the_new_input_scales(models, method):
    _, float_bytes, results = models["model_conv_chain"]
    graph, floating = read_tflite(results[method].data), read_tflite(float_bytes)
    twins = qgraph.plan(graph, floating).op_twins
    checked = 0
    for op in graph.operators:
        if op.opcode not in qgraph.WEIGHTED_OPS:
            continue
        bias = graph.tensors[op.inputs[2]]
        expected = graph.tensors[op.inputs[0]].scale[0] * graph.tensors[op.inputs[1]].scale
        np.testing.assert_allclose(bias.scale, expected, rtol=1e-6)
        float_bias = floating.tensors[twins[op.index].inputs[2]].data
        assert np.all(np.abs(bias.data * bias.scale - float_bias) <= bias.scale / 2 + 1e-9)
        checked += 1
    assert checked == 4


def _layer_sources(compiled) -> list[tuple[str, object]]:
    return [(step.source, layer) for step, layer in zip(compiled.program.steps, read_kmodel(compiled.data).layers,
                                                         strict=True)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["model_conv_chain", "model_passthrough"])
def test_kmodel_holds_the_chosen_ranges(models, name, method):
    """Read back from the kmodel bytes: each KPU conv's input zero point (arg_w), its requantization multipliers
    (batch norm mul / 2^shift = s_in * s_w / s_out) and output zero point (batch norm add), each LeakyReLU layer's
    slopes, and the output DEQUANTIZE scale, all from the chosen ranges."""
    _, _, results = models[name]
    assert_kmodel_holds(results[method].data, chosen(results[method]))


def assert_kmodel_holds(data: bytes, want: dict[int, tuple[float, int]]) -> None:
    """The kmodel compiled from the uint8 TFLite `data` quantizes with the (scale, zero point) of `want` (int8
    TFLite tensor -> its quantization) on every KPU conv, LeakyReLU and output."""
    graph = read_tflite(data)
    compiled = compile_tflite(data)
    seen: set[str] = set()
    convs = 0
    for source, layer in _layer_sources(compiled):
        op = graph.operators[int(source.split()[0][1:])] if source.startswith("#") else None
        if layer.type != LayerType.K210_CONV or source in seen or op is None:
            continue
        seen.add(source)
        body = layer.body
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            s_in, z_in = want[_conv_input(graph, op)]
            out_index = _activated(graph, op)
            s_out, z_out = want[out_index]
            assert -body.args.arg_w == z_in + 128
            bits = body.activation.shift[1]
            m = body.bn.mul.astype(np.float64) / 2.0 ** (bits + body.bn.shift.astype(np.float64))
            s_w = np.broadcast_to(graph.tensors[op.inputs[1]].scale.astype(np.float64), m.shape)
            np.testing.assert_allclose(m, s_in * s_w / s_out, rtol=1e-5)
            bias = graph.tensors[op.inputs[2]].data.astype(np.float64)
            np.testing.assert_allclose(body.bn.add / 2.0 ** bits - bias * m, z_out + 128, atol=0.5)
            convs += 1
        elif op.opcode == "LEAKY_RELU":
            s_in, z_in = want[op.inputs[0]]
            s_out, _ = want[op.outputs[0]]
            assert -body.args.arg_w == z_in + 128
            assert body.activation.y_mul[2] == int(np.rint(np.float32(256) * np.float32(s_in) / np.float32(s_out)))
    assert convs == sum(op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D") for op in graph.operators)
    outputs = [layer.body for layer in read_kmodel(compiled.data).layers if layer.type == LayerType.DEQUANTIZE]
    for body, index in zip(outputs, graph.outputs, strict=True):
        scale, zero = want[index]
        assert body.scale == pytest.approx(scale, rel=1e-6) and body.bias == pytest.approx(-zero * scale, rel=1e-5)


def _conv_input(graph, op) -> int:
    producer = graph.producer(op.inputs[0])
    return producer.inputs[0] if producer is not None and producer.opcode == "PAD" else op.inputs[0]


def _activated(graph, op) -> int:
    """The conv's output, or the output of a ReLU-family op fused into it by the compiler (none in these models)."""
    return op.outputs[0]


@pytest.mark.parametrize("method", ("tflite",) + METHODS)
@pytest.mark.parametrize("name", ["model_conv_chain", "model_passthrough"])
def test_litert_and_simulator_agree_on_the_rewritten_model(models, images, name, method):
    cosine, within_one, _ = compare(models[name][2][method].data, images)
    assert cosine >= 0.999 and within_one >= 0.999, (cosine, within_one)


def _hist(values: np.ndarray) -> Histogram:
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    counts = np.histogram(values, bins=2048, range=(low, high))[0].astype(np.float64)
    return Histogram(low, high, counts)


def _fake_quant_mse(values: np.ndarray, low: float, high: float) -> float:
    scale, zero = int8_params(low, high)
    codes = np.clip(np.round(values / scale + zero), -128, 127)
    return float(np.mean(((codes - zero) * scale - values) ** 2))


def test_range_rules_on_known_distributions():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1, 200_000), rng.uniform(5, 40, 20)])  # a thin far tail
    gauss = _hist(values)
    assert percentile_range(gauss, 100.0) == (gauss.low, gauss.high)
    low, high = percentile_range(gauss, 99.0)
    assert high == pytest.approx(2.326, abs=0.05) and low == pytest.approx(-2.326, abs=0.05)
    # mse: no other range tried here quantizes these values with a smaller error
    best = _fake_quant_mse(values, *mse_range(gauss))
    for other in [(gauss.low, gauss.high), percentile_range(gauss, 99.0), percentile_range(gauss, 99.99),
                  (gauss.low / 2, gauss.high / 2), (gauss.low, gauss.high / 4)]:
        assert best <= _fake_quant_mse(values, *other) * 1.01, other
    low, high = kl_range(gauss)  # entropy calibration clips the thin tail and keeps the bulk
    assert 2.0 < high < 30.0 and -6.0 < low < -1.0
    relu = _hist(np.maximum(rng.normal(0, 1, 100_000), 0))
    for method in ("minmax", "percentile", "mse", "kl"):
        assert choose_range(relu, method, 99.9)[0] == 0.0
    assert int8_params(0.0, 2.55) == (pytest.approx(0.01), -128)
    assert int8_params(-1.0, 1.0)[1] in (0, -1)


def test_wrong_image_size_is_refused_with_its_index():
    model = COMPILER_SUITE["conv_chain"].layers()
    bad = [np.zeros((48, 64, 3), np.float32), np.zeros((40, 64, 3), np.float32)]
    with pytest.raises(PipelineError, match=r"calibration image 1 is \(40, 64, 3\).*\(48, 64, 3\)"):
        quantize_keras(model, b"", bad, "mse", 99.9)
