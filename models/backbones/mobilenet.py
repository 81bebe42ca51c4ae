"""MobileNetV1 (alpha = width) with stride 2 as explicit pad + VALID, so the K210 compiler can lower it."""

from __future__ import annotations

import keras

from models.backbones.blocks import channels, conv_bn, depthwise_bn

# (pointwise filters, stride-2 depthwise) per depthwise-separable block, after the first 3x3 stride-2 conv.
BLOCKS_TO_STRIDE16 = [(64, False), (128, True), (128, False), (256, True), (256, False), (512, True)] + [
    (512, False)] * 5
BLOCKS_STRIDE32 = [(1024, True), (1024, False)]


def _separable(x: keras.KerasTensor, blocks: list[tuple[int, bool]], width: float, act: str,
               start: int) -> tuple[keras.KerasTensor, int]:
    for filters, stride2 in blocks:
        x = depthwise_bn(x, act, f"mobilenet_dw{start}", stride2=stride2)
        x = conv_bn(x, channels(filters, width), 1, act, f"mobilenet_pw{start}")
        start += 1
    return x, start


def mobilenet_v1(inputs: keras.KerasTensor, width: float, act: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The stride-16 and stride-32 feature maps of MobileNetV1 without its classifier."""
    x = conv_bn(inputs, channels(32, width), 3, act, "mobilenet_conv0", stride2=True)
    stride16, index = _separable(x, BLOCKS_TO_STRIDE16, width, act, 1)
    stride32, _ = _separable(stride16, BLOCKS_STRIDE32, width, act, index)
    return stride16, stride32
