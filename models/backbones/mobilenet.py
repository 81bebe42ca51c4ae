"""MobileNetV1 (alpha = width) with stride 2 as explicit pad + VALID, so the K210 compiler can lower it."""

from __future__ import annotations

import keras

from models.backbones.blocks import Widths, conv_bn, depthwise_bn

# (pointwise filters, stride-2 depthwise) per depthwise-separable block, after the first 3x3 stride-2 conv. At output
# stride 16 the last stride-2 depthwise runs at stride 1.
BLOCKS = [(64, False), (128, True), (128, False), (256, True), (256, False), (512, True)] + [(512, False)] * 5 + [
    (1024, True), (1024, False)]


def mobilenet_v1(inputs: keras.KerasTensor, widths: Widths, act: str,
                 output_stride: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """MobileNetV1's maps (without its classifier) at output_stride / 2 and output_stride."""
    x = conv_bn(inputs, widths(32), 3, act, "mobilenet_conv0", stride2=True)
    stride, maps = 2, {}
    for index, (filters, stride2) in enumerate(BLOCKS, start=1):
        stride2 = stride2 and stride < output_stride
        stride *= 2 if stride2 else 1
        x = depthwise_bn(x, act, f"mobilenet_dw{index}", stride2=stride2)
        x = conv_bn(x, widths(filters), 1, act, f"mobilenet_pw{index}")
        maps[stride] = x
    return maps[output_stride // 2], maps[output_stride]
