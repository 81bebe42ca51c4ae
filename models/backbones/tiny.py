"""The tiny YOLOv2 backbone (one 3x3 conv then a max pool per stage) with a width multiplier."""

from __future__ import annotations

import keras

from models.backbones.blocks import Widths, conv_bn, max_pool

# One 3x3 conv per entry; a max pool comes before the 2nd to 6th (tiny YOLOv2's 6th pool, stride 1, is left out),
# so conv i runs at stride 2**(i-1) up to 32. At output stride 16 the last pool is left out.
FILTERS = [16, 32, 64, 128, 256, 512, 1024]


def tiny_yolov2(inputs: keras.KerasTensor, widths: Widths, act: str,
                output_stride: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Tiny YOLOv2's maps at output_stride / 2 and output_stride."""
    x, maps = inputs, {}
    for index, filters in enumerate(FILTERS, start=1):
        stride = 2 ** min(index - 1, 5)
        if 1 < index <= 6 and stride <= output_stride:
            x = max_pool(x, f"tiny_pool{index - 1}")
        x = conv_bn(x, widths(filters), 3, act, f"tiny_conv{index}")
        maps[min(stride, output_stride)] = x
    return maps[output_stride // 2], maps[output_stride]
