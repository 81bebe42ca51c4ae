"""The project's own detector families (models.yolo_head.build_detector), exported to uint8 TFLite with the
foundation's export_uint8, compile and run in the simulator like LiteRT runs them."""

from __future__ import annotations

import pytest

from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.k210.format.kmodel import LayerType
from tests.kpu_models import compare, detector_net, real_images, tflite

WIDTH, HEIGHT = 160, 128


def detector_tflite(family: str, output_stride: int = 32) -> bytes:
    return tflite(detector_net(family, width=0.25, size=(WIDTH, HEIGHT), num_classes=1, seed=1,
                               output_stride=output_stride))


@pytest.mark.parametrize("family", ["tiny", "mobilenet_v1"])
def test_detector_matches_litert(family):
    data = detector_tflite(family)
    cosine, within_one, types = compare(data, real_images(WIDTH, HEIGHT)[:4])
    assert cosine >= 0.999 and within_one >= 0.99
    assert set(types) == {LayerType.K210_CONV, LayerType.DEQUANTIZE}  # everything on the KPU
    # one KPU layer per conv / depthwise / LeakyReLU: stride-2 depthwise decimation rides on the next 1x1 conv
    graph = read_tflite(data)
    expected = sum(op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "LEAKY_RELU") for op in graph.operators)
    assert types.count(LayerType.K210_CONV) == expected


def test_fused_leaky_tiny_detector_has_one_kpu_layer_per_conv():
    """compile.fuse_leaky: one KPU layer per conv + LeakyReLU. One rounding instead of LiteRT's two leaves about a
    quarter of each layer's LeakyReLU values 1 LSB off; over this untrained 10-conv detector that drifts to
    cosine 0.9978 and 61 % of output bytes within 1 LSB (the two-layer default: 1.0 and 100 %), so the fused
    path does not meet the >= 0.999 / >= 99 % criterion and stays opt-in."""
    data = detector_tflite("tiny")
    cosine, within_one, types = compare(data, real_images(WIDTH, HEIGHT)[:4], fuse_leaky=True)
    graph = read_tflite(data)
    assert types.count(LayerType.K210_CONV) == sum(op.opcode == "CONV_2D" for op in graph.operators)
    assert set(types) == {LayerType.K210_CONV, LayerType.DEQUANTIZE}
    assert cosine >= 0.995 and within_one >= 0.5


@pytest.mark.parametrize(("family", "output_stride"), [("darknet19", 32), ("skip_darknet19", 32),
                                                      ("skip_darknet19", 16)])
def test_darknet_detectors_compile_with_passthrough_on_the_kpu(family, output_stride):
    """Untrained 20-layer DarkNets amplify the rare requantization ties between the KPU's 23-bit multipliers and
    XNNPACK's float32 rounding, so only the cosine is checked here (a trained skip_darknet19 w0.14 face detector
    measured cosine >= 0.99993 and >= 99.75 % of bytes within 1 LSB)."""
    data = detector_tflite(family, output_stride)
    compiled = compile_tflite(data)
    graph = read_tflite(data)
    assert tuple(graph.tensors[graph.outputs[0]].shape[1:3]) == (HEIGHT // output_stride, WIDTH // output_stride)
    if family == "skip_darknet19":
        assert any(t.kpu_parent for t in compiled.program.tensors.values())  # passthrough concat in place
    cosine, _, types = compare(data, real_images(WIDTH, HEIGHT)[:2])
    assert cosine >= 0.998 and set(types) == {LayerType.K210_CONV, LayerType.DEQUANTIZE}
