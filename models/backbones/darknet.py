"""DarkNet19 (the YOLOv2 backbone) with a width multiplier, max-pool downsampling as in the original."""

from __future__ import annotations

import keras

from models.backbones.blocks import Widths, conv_bn, max_pool

# (kernel, filters) per conv, one list per stage; a 2x2 max pool comes before every stage but the first, so stage i
# runs at stride 2**i. At output stride 16 the last pool is left out and the deepest stage runs at stride 16.
STAGES = [
    [(3, 32)], [(3, 64)], [(3, 128), (1, 64), (3, 128)], [(3, 256), (1, 128), (3, 256)],
    [(3, 512), (1, 256), (3, 512), (1, 256), (3, 512)], [(3, 1024), (1, 512), (3, 1024), (1, 512), (3, 1024)],
]


def darknet19(inputs: keras.KerasTensor, widths: Widths, act: str,
              output_stride: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """DarkNet19's (19 convs without the classifier) maps at output_stride / 2 and output_stride."""
    x, index, maps = inputs, 1, {}
    for number, stage in enumerate(STAGES):
        if number and 2 ** number <= output_stride:
            x = max_pool(x, f"darknet_pool{index - 1}")
        for kernel, filters in stage:
            x = conv_bn(x, widths(filters), kernel, act, f"darknet_conv{index}")
            index += 1
        maps[min(2 ** number, output_stride)] = x
    return maps[output_stride // 2], maps[output_stride]
