"""What a model costs on the K210: parameters, MACs, kmodel (uint8) size and the largest per-layer KPU RAM use.

The kmodel size is an upper bound of what the compiler writes (deploy/k210/compiler/lower.py): every conv is one KPU
layer (weights, BN words, activation table), and the compiler adds KPU layers of its own: a depthwise 1x1 layer per
LeakyReLU, a one-hot copy layer where a pooled map has other consumers, a one-hot 3x3 layer per space-to-depth, and a
1x1 layer for a Dense (in its 4x4-padded form, between two small padding layers). Each KPU layer also costs its
layer entry, conv head and register words, and alignment padding, counted at its largest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import keras

from hardware.k210 import (
    ACTIVATION_TABLE_BYTES,
    BN_WORD_BYTES,
    KMODEL_ACTIVATION_ALIGN,
    KMODEL_BN_ALIGN,
    KMODEL_BODY_ALIGN,
    KMODEL_CONV_HEAD_BYTES,
    KMODEL_ENTRY_BYTES,
    KMODEL_HEADER_BYTES,
    KMODEL_REGISTER_ALIGN,
    KMODEL_WEIGHTS_ALIGN,
    KPU_MAX_CHANNELS,
    KPU_RAM_BYTES,
    LAYER_ARGUMENT_BYTES,
    MIB,
    map_bytes,
)
from models.backbones.blocks import SpaceToDepth
from models.yolo_head import build_detector
from pipeline.errors import PipelineError

WIDTH_STEP = 1 / 256  # 4 channels of a 1024-filter layer
# The most padding one KPU layer's body can take: before its register words, weights, BN words and activation table,
# and at its end.
KPU_LAYER_PADDING = sum(align - 1 for align in (KMODEL_REGISTER_ALIGN, KMODEL_WEIGHTS_ALIGN, KMODEL_BN_ALIGN,
                                                 KMODEL_ACTIVATION_ALIGN, KMODEL_BODY_ALIGN))
# The CPU layers around a model output and a KPU Dense: DEQUANTIZE (flags, in, out, count, scale, bias: 6 words),
# K210_ADD_PADDING and K210_REMOVE_PADDING (4 words each), each with its layer entry.
DEQUANTIZE_BYTES = KMODEL_ENTRY_BYTES + 24
DENSE_PADDING_BYTES = 2 * (KMODEL_ENTRY_BYTES + 16)


def kpu_layer_bytes(weights: int, channels: int) -> int:
    """The most bytes one K210_CONV layer takes in a kmodel: entry, conv head, register words, uint8 weights, one BN
    word per output channel, the activation table and the padding between them."""
    return (KMODEL_ENTRY_BYTES + KMODEL_CONV_HEAD_BYTES + LAYER_ARGUMENT_BYTES + weights + BN_WORD_BYTES * channels
            + ACTIVATION_TABLE_BYTES + KPU_LAYER_PADDING)


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


def _consumers(model: keras.Model) -> dict[int, list[keras.layers.Layer]]:
    """id(tensor) -> the layers that read it."""
    consumers: dict[int, list[keras.layers.Layer]] = {}
    for layer in model.layers[1:]:
        for tensor in layer.input if isinstance(layer.input, list) else [layer.input]:
            consumers.setdefault(id(tensor), []).append(layer)
    return consumers


def _conv_chain(conv: keras.layers.Layer, consumers: dict[int, list[keras.layers.Layer]]
                ) -> tuple[keras.layers.Layer | None, bool, bool]:
    """What follows a conv through its BN and activation: (the 2x2 max pool the compiler fuses or None, whether a
    LeakyReLU follows, whether the pooled map also has other consumers: a one-hot copy layer pools it then)."""
    layer, leaky = conv, False
    for _ in range(3):  # BN, activation, pool
        following = consumers.get(id(layer.output), [])
        pools = [f for f in following if isinstance(f, keras.layers.MaxPooling2D)]
        if pools and len(following) > 1:
            return pools[0], leaky, True
        if len(following) != 1:
            break
        layer = following[0]
        leaky = leaky or isinstance(layer, keras.layers.LeakyReLU)
        if isinstance(layer, keras.layers.MaxPooling2D):
            return layer, leaky, False
    return None, leaky, False


def measure(model: keras.Model) -> Budget:
    """Parameters, multiply-accumulates, kmodel bytes (an upper bound: see the module doc) and KPU RAM peak."""
    macs = ram = max_channels = 0
    kmodel = KMODEL_HEADER_BYTES + KMODEL_ENTRY_BYTES * len(model.outputs) + DEQUANTIZE_BYTES * len(model.outputs)
    consumers = _consumers(model)
    for layer in _conv_layers(model):
        _, in_h, in_w, in_c = layer.input.shape
        _, out_h, out_w, out_c = layer.output.shape
        kernel = layer.kernel.shape
        per_pixel = kernel[0] * kernel[1] * (in_c if isinstance(layer, keras.layers.DepthwiseConv2D) else in_c * out_c)
        macs += out_h * out_w * per_pixel
        pool, leaky, shared = _conv_chain(layer, consumers)
        kmodel += kpu_layer_bytes(int(math.prod(kernel)), out_c)
        kmodel += kpu_layer_bytes(out_c, out_c) if leaky else 0  # the LeakyReLU's depthwise 1x1 layer
        kmodel += kpu_layer_bytes(out_c * out_c, out_c) if shared else 0  # the one-hot pooling copy
        stored = (pool if pool is not None and not shared else layer).output.shape
        pad = 2 if layer.padding == "valid" and layer.strides[0] == 2 else 0  # the explicit pad is folded into the KPU
        ram = max(ram, map_bytes(in_c, in_h - pad, in_w - pad) + map_bytes(*_chw(stored)))
        max_channels = max(max_channels, in_c, out_c)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):  # lowered to a KPU 1x1 conv on a 4x4-padded map (uint8 weights)
            macs += math.prod(layer.kernel.shape)
            kmodel += kpu_layer_bytes(math.prod(layer.kernel.shape), layer.units) + DENSE_PADDING_BYTES
        elif isinstance(layer, SpaceToDepth):  # a one-hot 3x3 KPU conv: 4C outputs reading C inputs
            channels = int(layer.input.shape[-1])
            kmodel += kpu_layer_bytes(9 * 4 * channels * channels, 4 * channels)
    return Budget(params=model.count_params(), macs=int(macs), uint8_bytes=int(kmodel), kpu_ram_bytes=ram,
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
