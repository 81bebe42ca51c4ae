"""Face embedding networks the KPU runs whole: convs down to a 4x4 map, a 1x1 reduction, then a small Dense layer
(a CPU layer on the K210) to the embedding. L2 normalisation is left to the caller (the K210's CPU does it).

- `skip_darknet19`: the seed paper's skip-connection DarkNet19 at output stride 32 (a 4x4 map at 128x128), with its
  stride-16 map reorganised and concatenated as in the detector.
- `mobilefacenet`: MobileFaceNet made KPU-friendly: LeakyReLU/ReLU instead of PReLU, bottlenecks without residual
  adds (an ADD runs on the K210's CPU), and no 7x7 global depthwise conv: a 3x3 stride-2 depthwise conv takes the
  stride-16 map to 4x4, then the 1x1 reduction and the Dense layer.
"""

from __future__ import annotations

from typing import Any

import keras

from hardware.k210 import KPU_MIN_SIZE
from models.backbones.blocks import SpaceToDepth, Widths, conv_bn, depthwise_bn
from models.backbones.darknet import darknet19
from models.yolo_head import load_detector, model_widths
from pipeline.errors import PipelineError

FAMILIES = ("skip_darknet19", "mobilefacenet")
EMBEDDING_NAME = "embedding"

# MobileFaceNet's bottlenecks: (expansion, output channels, repeats, stride of the first), after conv1 (64, stride 2)
# and a 3x3 depthwise conv (64).
MOBILEFACENET_BOTTLENECKS = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]
MOBILEFACENET_LAST = 512


def input_side(model_cfg: dict[str, Any]) -> int:
    """The square input side: 112 or 128 (both give a 4x4 map before the head)."""
    size = [int(v) for v in model_cfg["input_size"]]
    if len(size) != 2 or size[0] != size[1] or size[0] not in (112, 128):
        raise PipelineError(f"got {model_cfg['input_size']!r}", field="model.input_size",
                            expected="[112, 112] or [128, 128] for a recognizer")
    if model_cfg["family"] == "skip_darknet19" and size[0] != 128:
        raise PipelineError(f"{size[0]}x{size[0]} gives a 3.5x3.5 map at stride 32", field="model.input_size",
                            expected="[128, 128] for skip_darknet19")
    return size[0]


def _skip_darknet19(inputs: keras.KerasTensor, widths: Widths, act: str) -> keras.KerasTensor:
    fine, deep = darknet19(inputs, widths, act, 32)
    reorg = SpaceToDepth(2, name="passthrough_reorg")(conv_bn(fine, widths(64), 1, act, "passthrough_conv"))
    x = keras.layers.Concatenate(name="passthrough_concat")([reorg, deep])
    return conv_bn(x, widths(1024), 3, act, "head_conv1")


def _mobilefacenet(inputs: keras.KerasTensor, widths: Widths, act: str) -> keras.KerasTensor:
    x = conv_bn(inputs, widths(64), 3, act, "mfn_conv1", stride2=True)
    x = depthwise_bn(x, act, "mfn_dw1")
    x = conv_bn(x, widths(64), 1, act, "mfn_pw1")
    index = 0
    for expansion, channels, repeats, stride in MOBILEFACENET_BOTTLENECKS:
        for repeat in range(repeats):
            index += 1
            name = f"mfn_block{index}"
            y = conv_bn(x, widths(channels * expansion), 1, act, f"{name}_expand")
            y = depthwise_bn(y, act, f"{name}_dw", stride2=stride == 2 and repeat == 0)
            y = keras.layers.Conv2D(widths(channels), 1, use_bias=False, name=f"{name}_project")(y)
            x = keras.layers.BatchNormalization(name=f"{name}_project_bn")(y)  # linear bottleneck
    x = conv_bn(x, widths(MOBILEFACENET_LAST), 1, act, "mfn_conv_last")
    return depthwise_bn(x, act, "mfn_reduce", stride2=True)  # stride 16 (8x8 or 7x7) -> 4x4


def build_embedder(model_cfg: dict[str, Any], embedding_size: int, head_channels: int) -> keras.Model:
    """float32 RGB in [0, 1] of (side, side, 3) -> an embedding_size vector (not normalised)."""
    family = model_cfg["family"]
    if family not in FAMILIES:
        raise PipelineError(f"unknown recognizer family {family!r}", field="model.family",
                            expected=f"one of {', '.join(FAMILIES)}")
    side = input_side(model_cfg)
    widths, act = model_widths(model_cfg), model_cfg.get("activation", "leaky")
    inputs = keras.Input((side, side, 3), name="image")
    x = (_skip_darknet19 if family == "skip_darknet19" else _mobilefacenet)(inputs, widths, act)
    if x.shape[1] < KPU_MIN_SIZE:
        raise PipelineError(f"the map before the head is {x.shape[1]}x{x.shape[2]}", field="model.input_size",
                            expected=f"a map of at least {KPU_MIN_SIZE}x{KPU_MIN_SIZE}")
    x = keras.layers.Conv2D(max(4, head_channels), 1, use_bias=False, name="head_reduce")(x)
    x = keras.layers.BatchNormalization(name="head_reduce_bn")(x)
    x = keras.layers.Flatten(name="head_flatten")(x)
    outputs = keras.layers.Dense(embedding_size, name=EMBEDDING_NAME)(x)
    return keras.Model(inputs, outputs, name=f"{family}_rec_w{widths.multiplier:g}")


load_embedder = load_detector  # a saved embedder holds the same custom layer (the passthrough) as a detector
