"""The YOLOv2 detector: backbone, optional passthrough, three 3x3 convs and a linear 1x1 output conv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.backbones import backbone_for
from models.backbones.blocks import KPU_MIN_CHANNELS, OUTPUT_STRIDES, SpaceToDepth, Widths, conv_bn
from pipeline.errors import PipelineError
from pipeline.keras_files import load_keras

PASSTHROUGH_FILTERS = 64  # YOLOv2's 1x1 reduction before the reorg (full width), keeps the concat narrower
HEAD_CONVS = 3


def output_stride(model_cfg: dict[str, Any]) -> int:
    """model.output_stride: 32 (YOLOv2's 10x8 grid at 320x256) or 16 (a 20x16 grid for small faces)."""
    stride = model_cfg.get("output_stride", 32)
    if stride not in OUTPUT_STRIDES:
        raise PipelineError(f"got {stride!r}", field="model.output_stride",
                            expected=f"one of {', '.join(map(str, OUTPUT_STRIDES))}")
    return int(stride)


def check_input_size(input_size: list[int] | tuple[int, int], stride: int = 32) -> tuple[int, int]:
    """(width, height) when both are multiples of the output stride (so the map at half the stride pairs up for
    the passthrough)."""
    if len(input_size) != 2:
        raise PipelineError(f"got {input_size!r}", field="model.input_size", expected="[width, height]")
    width, height = (int(v) for v in input_size)
    half = stride // 2
    for name, side in (("width", width), ("height", height)):
        if side % stride:
            raise PipelineError(
                f"{width}x{height}: the {name} {side} is not a multiple of {stride}, so the stride-{half} map has an "
                f"odd side ({side / half:g}) that the passthrough (space_to_depth, block 2) cannot pair and the "
                f"stride-{stride} grid is not whole", field="model.input_size",
                expected="320x256 (the default; letterboxing pads a 320x240 camera frame), 320x224 or 224x224")
    if min(width, height) < 4 * stride:
        raise PipelineError(f"{width}x{height} gives a grid under 4x4", field="model.input_size",
                            expected=f"sides of at least {4 * stride} (the KPU's minimum 4x4 map)")
    return width, height


def grid_size(model_cfg: dict[str, Any]) -> tuple[int, int]:
    """(grid width, grid height) of the output: the input size divided by the output stride."""
    stride = output_stride(model_cfg)
    width, height = check_input_size(model_cfg["input_size"], stride)
    return width // stride, height // stride


def num_anchors(model_cfg: dict[str, Any]) -> int:
    """How many anchors the model predicts per cell: the configured anchors, else model.num_anchors."""
    anchors = model_cfg.get("anchors")
    return len(anchors) if anchors else int(model_cfg["num_anchors"])


def _passthrough_source(fine: keras.KerasTensor, model_cfg: dict[str, Any], widths: Widths,
                        act: str) -> keras.KerasTensor:
    """The map the passthrough reorganises: the map at half the output stride itself (model.passthrough_filters =
    0), or a 1x1 conv of it to that many channels (None: YOLOv2's 64, scaled by the width)."""
    filters = model_cfg.get("passthrough_filters")
    if filters == 0:
        return fine
    filters = widths(PASSTHROUGH_FILTERS) if filters is None else int(filters)
    return conv_bn(fine, filters, 1, act, "passthrough_conv")


def model_widths(model_cfg: dict[str, Any]) -> Widths:
    """The channel rule of model.width and model.min_channels, checked."""
    width, floor = float(model_cfg["width"]), int(model_cfg.get("min_channels", KPU_MIN_CHANNELS))
    if not 0 < width <= 1:
        raise PipelineError(f"got {width}", field="model.width", expected="a width multiplier in (0, 1]")
    if not KPU_MIN_CHANNELS <= floor <= 1024:
        raise PipelineError(f"got {floor}", field="model.min_channels",
                            expected=f"a channel count in [{KPU_MIN_CHANNELS}, 1024]")
    return Widths(width, floor)


def build_detector(model_cfg: dict[str, Any], num_classes: int) -> keras.Model:
    """The Keras detector: float32 RGB in [0, 1] of (height, width, 3) -> (H/s, W/s, A * (5 + C)) raw logits for
    the output stride s."""
    stride = output_stride(model_cfg)
    width_px, height_px = check_input_size(model_cfg["input_size"], stride)
    backbone, passthrough = backbone_for(model_cfg["family"])
    widths, act = model_widths(model_cfg), model_cfg.get("activation", "leaky")
    inputs = keras.Input((height_px, width_px, 3), name="image")
    fine, deep = backbone(inputs, widths, act, stride)
    x = deep
    if passthrough:
        x = keras.layers.Concatenate(name="passthrough_concat")(
            [SpaceToDepth(2, name="passthrough_reorg")(_passthrough_source(fine, model_cfg, widths, act)), x])
    head_filters = widths(1024)
    for index in range(1, HEAD_CONVS + 1):
        x = conv_bn(x, head_filters, 3, act, f"head_conv{index}")
    outputs = keras.layers.Conv2D(num_anchors(model_cfg) * (5 + num_classes), 1, padding="same", name="yolo_output")(x)
    return keras.Model(inputs, outputs, name=f"{model_cfg['family']}_w{widths.multiplier:g}")


def load_detector(path: Path) -> keras.Model:
    """A saved detector or embedder (.keras), with the custom passthrough layer; a clear error if unreadable."""
    return load_keras(path, {"SpaceToDepth": SpaceToDepth})


def head_metadata(model_cfg: dict[str, Any], classes: list[str], anchors: np.ndarray | list) -> dict[str, Any]:
    """What the firmware and compiler need to decode the output (written to build/<config>/model_meta.json)."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    return {"classes": list(classes), "anchors": anchors.round(6).tolist(),
            "input_size": list(check_input_size(model_cfg["input_size"], output_stride(model_cfg))),
            "grid": list(grid_size(model_cfg)), "num_anchors": int(len(anchors)),
            "family": model_cfg["family"], "width": float(model_cfg["width"]), "layout": "HWC a*(5+C)+e"}
