"""What a (pruned) model costs, in the unit a pruning target names: MACs, parameters, kmodel bytes (the budget's
upper bound, models/budget.py) or estimated K210 latency. The latency comes from the compiler's cycle model, which
the caller hands in as `conv_time` (models/ does not import deploy/): an estimate, not a board measurement."""

from __future__ import annotations

from collections.abc import Callable

import keras

from models.backbones.blocks import SpaceToDepth
from models.budget import measure
from pipeline.config import RULES
from pipeline.errors import PipelineError

METRICS = RULES["prune.target_metric"].choices
# (input C, H, W; output channels; kernel side; depthwise) -> estimated microseconds of that KPU layer
ConvTime = Callable[[tuple[int, int, int], int, int, bool], float]


def _chw(shape: tuple) -> tuple[int, int, int]:
    return int(shape[3]), int(shape[1]), int(shape[2])


def _leaky_follows(layer: keras.layers.Layer, consumers: dict[str, list[keras.layers.Layer]]) -> bool:
    """Whether the conv's output reaches a LeakyReLU through at most its batch norm."""
    after = consumers.get(layer.name, [])
    if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization):
        after = consumers.get(after[0].name, [])
    return len(after) == 1 and isinstance(after[0], keras.layers.LeakyReLU)


def latency_us(model: keras.Model, conv_time: ConvTime, fuse_leaky: bool = False) -> float:
    """Estimated KPU microseconds of the model's convs, the compiler's depthwise 1x1 layer per LeakyReLU (unless
    fused) and the one-hot 3x3 layer per space-to-depth (the CPU's output dequantisation is left out)."""
    consumers: dict[str, list[keras.layers.Layer]] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        for node in layer._inbound_nodes[:1]:
            for tensor in node.input_tensors:
                consumers[tensor._keras_history.operation.name].append(layer)
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            out_chw = _chw(layer.output.shape)
            total += conv_time(_chw(layer.input.shape), out_chw[0], int(layer.kernel_size[0]), depthwise)
            if not fuse_leaky and _leaky_follows(layer, consumers):
                total += conv_time(out_chw, out_chw[0], 1, True)
        elif isinstance(layer, SpaceToDepth):
            in_chw = _chw(layer.input.shape)
            total += conv_time(in_chw, 4 * in_chw[0], 3, False)
    return total


def model_cost(model: keras.Model, metric: str, conv_time: ConvTime | None = None, fuse_leaky: bool = False
               ) -> float:
    """The model's cost in `metric` (latency in estimated microseconds)."""
    if metric == "latency":
        if conv_time is None:
            raise PipelineError("a latency target needs the compiler's cycle model, which this caller did not pass",
                                field="prune.target_metric", expected="macs, params or kmodel_bytes here, or "
                                "`invoke prune`, which passes the cycle model")
        return latency_us(model, conv_time, fuse_leaky)
    budget = measure(model)
    if metric == "macs":
        return float(budget.macs)
    if metric == "params":
        return float(budget.params)
    if metric == "kmodel_bytes":
        return float(budget.uint8_bytes)
    raise PipelineError(f"got {metric!r}", field="prune.target_metric", expected=" | ".join(METRICS))
