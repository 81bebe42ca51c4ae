"""What each layer writes to the main buffer (address, array shape, dtype), read from the layer's fields alone, and
from that how a model's outputs are presented: simulate() and the fast simulator shape output bytes by it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import numpy as np

from deploy.k210.format import kmodel as km
from pipeline.errors import PipelineError

U8, F32 = np.dtype(np.uint8), np.dtype("<f4")
LT = km.LayerType


@dataclass(frozen=True)
class MainWrite:
    """The array a layer writes at byte offset `addr` of the main buffer (as its simulator op returns it)."""

    addr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class OutputLayout:
    """How one model output is presented: uint8 codes, or float32 when a float layer wrote it; the writer's shape when
    it wrote exactly that output, else flat."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def is_float(self) -> bool:
        return self.dtype == F32


Shape = Callable[[km.Body], tuple[int, ...]]


def _typed(float_type: LT, quantized_type: LT, shape: Shape) -> dict[LT, tuple[Shape, np.dtype]]:
    return {float_type: (shape, F32), quantized_type: (shape, U8)}


def _count(b: km.Body) -> tuple[int, ...]:
    return (b.count,)


def _channels(b: km.Body) -> tuple[int, ...]:
    return (b.channels,)


def _pooled(b: km.Body) -> tuple[int, ...]:
    return (b.in_channels, b.out_height, b.out_width)


# per CPU layer type: the shape of the array it writes at body.out_addr, and its dtype (cpu_ops.py, spec §7.4)
CPU_WRITES: dict[LT, tuple[Shape, np.dtype]] = {
    LT.ADD: (_count, F32), LT.QUANTIZED_ADD: (_count, U8), LT.QUANTIZE: (_count, U8), LT.DEQUANTIZE: (_count, F32),
    LT.REQUANTIZE: (_count, U8),
    **dict.fromkeys((LT.CONCAT, LT.QUANTIZED_CONCAT), (lambda b: (sum(size for _, size in b.inputs),), U8)),
    LT.FULLY_CONNECTED: (lambda b: (b.out_channels,), F32),
    LT.CHANNELWISE_DEQUANTIZE: (lambda b: (b.channels, b.channel_size), F32),
    LT.K210_REMOVE_PADDING: (_channels, U8),
    **_typed(LT.GLOBAL_MAX_POOL2D, LT.QUANTIZED_GLOBAL_MAX_POOL2D, _channels),
    **_typed(LT.GLOBAL_AVERAGE_POOL2D, LT.QUANTIZED_GLOBAL_AVERAGE_POOL2D, _channels),
    **_typed(LT.MAX_POOL2D, LT.QUANTIZED_MAX_POOL2D, _pooled),
    **_typed(LT.AVERAGE_POOL2D, LT.QUANTIZED_AVERAGE_POOL2D, _pooled),
    **dict.fromkeys((LT.L2_NORMALIZATION, LT.SOFTMAX, LT.LOGISTIC), (_channels, F32)),
    **_typed(LT.TENSORFLOW_FLATTEN, LT.QUANTIZED_TENSORFLOW_FLATTEN, lambda b: (b.height, b.width, b.channels)),
    **_typed(LT.RESIZE_NEAREST_NEIGHBOR, LT.QUANTIZED_RESIZE_NEAREST_NEIGHBOR,
             lambda b: (b.channels, b.out_height, b.out_width)),
}


def main_write(layer: km.Layer) -> MainWrite | None:
    """What `layer` writes to the main buffer; None when it writes only KPU RAM."""
    body = layer.body
    if isinstance(body, km.K210ConvBody):
        if not body.flags & km.FLAG_MAIN_MEM_OUT:
            return None
        return MainWrite(body.main_mem_out_addr, tuple(body.args.out_shape), U8)
    if layer.type not in CPU_WRITES:
        return None
    shape, dtype = CPU_WRITES[layer.type]
    return MainWrite(body.out_addr, tuple(int(n) for n in shape(body)), dtype)


def output_layouts(model: km.KModel) -> list[OutputLayout]:
    """Each output's dtype and shape, from the last layer whose main-buffer write covers the output's address."""
    writes = [w for w in map(main_write, model.layers) if w is not None]
    layouts = []
    for index, desc in enumerate(model.outputs):
        producer = next((w for w in reversed(writes) if w.addr <= desc.address < w.addr + w.nbytes), None)
        dtype = F32 if producer is not None and producer.dtype == F32 else U8
        if desc.size % dtype.itemsize:
            raise PipelineError(f"size {desc.size} is not a whole number of {dtype.str} items",
                                field=f"outputs[{index}].size", expected="a multiple of 4 for float outputs")
        exact = producer is not None and producer.addr == desc.address and producer.nbytes == desc.size
        layouts.append(OutputLayout(dtype, producer.shape if exact else (desc.size // dtype.itemsize,)))
    return layouts
