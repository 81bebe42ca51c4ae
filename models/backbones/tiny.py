"""The tiny YOLOv2 backbone (one 3x3 conv then a max pool per stage) with a width multiplier."""

from __future__ import annotations

import keras

from models.backbones.blocks import channels, conv_bn, max_pool

FILTERS_TO_STRIDE16 = [16, 32, 64, 128, 256]
FILTERS_STRIDE32 = [512, 1024]


def tiny_yolov2(inputs: keras.KerasTensor, width: float, act: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The stride-16 and stride-32 feature maps of tiny YOLOv2 (its 6th max pool, stride 1, is left out)."""
    x = inputs
    for index, filters in enumerate(FILTERS_TO_STRIDE16, start=1):
        if index > 1:
            x = max_pool(x, f"tiny_pool{index - 1}")
        x = conv_bn(x, channels(filters, width), 3, act, f"tiny_conv{index}")
    stride16 = x
    x = max_pool(x, f"tiny_pool{len(FILTERS_TO_STRIDE16)}")
    for index, filters in enumerate(FILTERS_STRIDE32, start=len(FILTERS_TO_STRIDE16) + 1):
        x = conv_bn(x, channels(filters, width), 3, act, f"tiny_conv{index}")
    return stride16, x
