"""What a detector costs on the K210: parameters, MACs, kmodel (uint8) size and the largest per-layer KPU RAM use."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import keras

from hardware.k210 import (
    ACTIVATION_TABLE_BYTES,
    BN_WORD_BYTES,
    KPU_MAX_CHANNELS,
    KPU_RAM_BYTES,
    MIB,
    map_bytes,
)
from models.yolo_head import build_detector
from pipeline.errors import PipelineError

WIDTH_STEP = 1 / 256  # 4 channels of a 1024-filter layer


@dataclass(frozen=True)
class Budget:
    """The cost of one model. `kpu_ram_bytes` is the largest input + stored output map (after a fused max pool) of any
    conv in KPU layout."""

    params: int
    macs: int
    uint8_bytes: int
    kpu_ram_bytes: int
    max_channels: int

    @property
    def uint8_mib(self) -> float:
        return self.uint8_bytes / MIB

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "uint8_mib": round(self.uint8_mib, 4), "macs_m": round(self.macs / 1e6, 2)}


def _conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)]


def _stored_output_shapes(model: keras.Model) -> dict[str, tuple]:
    """Conv name -> the shape of the map the KPU writes for it: after the 2x2 max pool that follows the conv's BN and
    activation, since the compiler fuses that pool into the conv (spec §3.4); the conv's own output otherwise."""
    consumers: dict[int, list[keras.layers.Layer]] = {}
    for layer in model.layers[1:]:
        for tensor in layer.input if isinstance(layer.input, list) else [layer.input]:
            consumers.setdefault(id(tensor), []).append(layer)
    shapes = {}
    for conv in _conv_layers(model):
        layer = conv
        for _ in range(3):  # BN, activation, pool
            following = consumers.get(id(layer.output), [])
            if len(following) != 1:
                break
            layer = following[0]
            if isinstance(layer, keras.layers.MaxPooling2D):
                break
        shapes[conv.name] = tuple((layer if isinstance(layer, keras.layers.MaxPooling2D) else conv).output.shape)
    return shapes


def measure(model: keras.Model) -> Budget:
    """Parameters, multiply-accumulates, kmodel bytes (weights + BN words + activation tables) and KPU RAM peak."""
    macs = weight_bytes = ram = max_channels = 0
    stored = _stored_output_shapes(model)
    for layer in _conv_layers(model):
        _, in_h, in_w, in_c = layer.input.shape
        _, out_h, out_w, out_c = layer.output.shape
        kernel = layer.kernel.shape
        per_pixel = kernel[0] * kernel[1] * (in_c if isinstance(layer, keras.layers.DepthwiseConv2D) else in_c * out_c)
        macs += out_h * out_w * per_pixel
        weight_bytes += int(math.prod(kernel)) + BN_WORD_BYTES * out_c + ACTIVATION_TABLE_BYTES
        pad = 2 if layer.padding == "valid" and layer.strides[0] == 2 else 0  # the explicit pad is folded into the KPU
        ram = max(ram, map_bytes(in_c, in_h - pad, in_w - pad) + map_bytes(*_chw(stored[layer.name])))
        max_channels = max(max_channels, in_c, out_c)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):  # lowered to a KPU 1x1 conv on a 4x4-padded map (uint8 weights)
            macs += math.prod(layer.kernel.shape)
            weight_bytes += math.prod(layer.kernel.shape) + BN_WORD_BYTES * layer.units + ACTIVATION_TABLE_BYTES
    return Budget(params=model.count_params(), macs=int(macs), uint8_bytes=int(weight_bytes), kpu_ram_bytes=ram,
                  max_channels=max_channels)


def _chw(shape: tuple) -> tuple[int, int, int]:
    _, height, width, depth = shape
    return depth, height, width


Builder = Callable[[dict[str, Any], int], keras.Model]


def measure_config(model_cfg: dict[str, Any], num_classes: int, build: Builder = build_detector) -> Budget:
    """The budget of the model a model config describes (the detector unless `build` says otherwise), built without
    training."""
    model = build(model_cfg, num_classes)
    try:
        return measure(model)
    finally:
        keras.backend.clear_session()


def widest_fitting(model_cfg: dict[str, Any], num_classes: int, budget_mib: float,
                   build: Builder = build_detector) -> float | None:
    """The largest width (a multiple of WIDTH_STEP) whose kmodel fits `budget_mib` and the KPU limits, or None."""
    low, high = 0, int(round(float(model_cfg["width"]) / WIDTH_STEP))
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(measure_config({**model_cfg, "width": mid * WIDTH_STEP}, num_classes, build), budget_mib):
            low = mid
        else:
            high = mid - 1
    return low * WIDTH_STEP if low else None


def _fits(budget: Budget, budget_mib: float) -> bool:
    return (budget.uint8_mib <= budget_mib and budget.kpu_ram_bytes <= KPU_RAM_BYTES
            and budget.max_channels <= KPU_MAX_CHANNELS)


def check_budget(model_cfg: dict[str, Any], num_classes: int, budget_mib: float,
                 build: Builder = build_detector) -> Budget:
    """The model's budget, or a PipelineError naming the width that would fit when it is over budget or KPU limits."""
    budget = measure_config(model_cfg, num_classes, build)
    if _fits(budget, budget_mib):
        return budget
    fitting = widest_fitting(model_cfg, num_classes, budget_mib, build)
    advice = f"model.width <= {fitting:g} fits" if fitting else "no width of this family fits; pick a smaller family"
    raise PipelineError(
        f"{model_cfg['family']} at width {model_cfg['width']:g} is {budget.uint8_mib:.2f} MiB at uint8 "
        f"(budget {budget_mib:g} MiB), needs {budget.kpu_ram_bytes / MIB:.2f} MiB of KPU RAM for one layer "
        f"(limit {KPU_RAM_BYTES / MIB:g} MiB) and has up to {budget.max_channels} channels (limit {KPU_MAX_CHANNELS}); "
        f"{advice}",
        field="model.width", expected=f"a model within {budget_mib:g} MiB and the KPU limits")
