"""DarkNet19 (the YOLOv2 backbone) with a width multiplier, max-pool downsampling as in the original."""

from __future__ import annotations

import keras

from models.backbones.blocks import channels, conv_bn, max_pool

# (kernel, filters) per conv; "pool" = 2x2 max pool. The stride-16 map is the output of the 5th stage.
STAGES_TO_STRIDE16 = [
    [(3, 32)], "pool", [(3, 64)], "pool", [(3, 128), (1, 64), (3, 128)], "pool",
    [(3, 256), (1, 128), (3, 256)], "pool", [(3, 512), (1, 256), (3, 512), (1, 256), (3, 512)],
]
STAGE_STRIDE32 = [(3, 1024), (1, 512), (3, 1024), (1, 512), (3, 1024)]


def _convs(x: keras.KerasTensor, layers: list[tuple[int, int]], width: float, act: str,
           prefix: str, start: int) -> tuple[keras.KerasTensor, int]:
    for kernel, filters in layers:
        x = conv_bn(x, channels(filters, width), kernel, act, f"{prefix}_conv{start}")
        start += 1
    return x, start


def darknet19(inputs: keras.KerasTensor, width: float, act: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The stride-16 and stride-32 feature maps of DarkNet19 (19 convs without the classifier)."""
    x, index = inputs, 1
    for item in STAGES_TO_STRIDE16:
        if item == "pool":
            x = max_pool(x, f"darknet_pool{index - 1}")
        else:
            x, index = _convs(x, item, width, act, "darknet", index)
    stride16 = x
    x = max_pool(x, f"darknet_pool{index - 1}")
    stride32, _ = _convs(x, STAGE_STRIDE32, width, act, "darknet", index)
    return stride16, stride32
