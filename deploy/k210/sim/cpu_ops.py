"""The V3 CPU layers (spec §7.4) on the simulator's main buffer and KPU RAM, following the SDK runtime.

Float layers compute in float32 in the C loop order (sequential accumulation via cumsum), so results match a
straightforward C implementation. Each op returns the array it wrote, for the per-layer trace.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deploy.k210.format import kmodel as km
from deploy.k210.sim.kpu_ram import write_map
from hardware.k210 import KPU_LINE_BYTES
from pipeline.errors import PipelineError

F32 = np.float32


class MainMemory:
    """The runtime's main buffer with bounds-checked typed access."""

    def __init__(self, size: int) -> None:
        self.data = np.zeros(size + 8, dtype=np.uint8)  # slack: QUANTIZED_ADD rounds counts up to 8

    def view(self, addr: int, count: int, dtype: str, what: str) -> np.ndarray:
        size = count * np.dtype(dtype).itemsize
        if addr < 0 or count < 0 or addr + size > len(self.data):
            raise PipelineError(f"{what}: {size} bytes at main-buffer offset {addr} exceed the "
                                f"{len(self.data) - 8}-byte main buffer", field=what,
                                expected="addresses inside main_mem_usage")
        return self.data[addr:addr + size].view(dtype)

    def read(self, addr: int, count: int, dtype: str, what: str) -> np.ndarray:
        return self.view(addr, count, dtype, what).copy()

    def write(self, addr: int, values: np.ndarray, what: str) -> np.ndarray:
        values = np.ascontiguousarray(values)
        self.view(addr, values.size, values.dtype.str, what)[...] = values.reshape(-1)
        return values


def seq_sum(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Float32 sum in sequential order along `axis` (what a C `for` loop computes)."""
    if values.shape[axis] == 0:
        return np.zeros(np.delete(values.shape, axis), F32)
    return np.take(np.cumsum(values, axis=axis, dtype=F32), -1, axis=axis)


def _activation(values: np.ndarray, act: int) -> np.ndarray:
    if act == km.Activation.RELU:
        return np.maximum(values, F32(0))
    if act == km.Activation.RELU6:
        return np.minimum(np.maximum(values, F32(0)), F32(6))
    return values


def carry_shift(value: np.ndarray, shift: int) -> np.ndarray:
    """The SDK's kpu_carry_shift, literally (round half up for v >= 0, its own rule for v < 0)."""
    if shift <= 0:
        return value
    u = value >> (shift - 1)
    odd = (u & 1) == 1
    return np.where(odd, np.where(u >= 0, (u >> 1) + 1, (u >> 1) - 1), u >> 1)


def add(body: km.AddBody, mem: MainMemory, name: str) -> np.ndarray:
    a = mem.read(body.in_a_addr, body.count, "<f4", f"{name}.in_a")
    b = mem.read(body.in_b_addr, body.count, "<f4", f"{name}.in_b")
    return mem.write(body.out_addr, a + b, f"{name}.out")


def quantized_add(body: km.QuantizedAddBody, mem: MainMemory, name: str) -> np.ndarray:
    count = -(-body.count // 8) * 8
    a = mem.read(body.in_a_addr, count, "u1", f"{name}.in_a").astype(np.int64)
    b = mem.read(body.in_b_addr, count, "u1", f"{name}.in_b").astype(np.int64)
    shifts = (body.in_a_shift, body.in_b_shift, body.out_shift)
    if any(not 0 <= s < 63 for s in shifts):
        raise PipelineError(f"shift {shifts} out of range", field=f"{name}.shift", expected="0..62")
    va = (a + body.in_a_offset) * body.in_a_mul
    vb = (b + body.in_b_offset) * body.in_b_mul
    if body.in_a_shift == body.in_b_shift:
        value = (va + vb) >> body.in_a_shift
    else:
        value = (va >> body.in_a_shift) + (vb >> body.in_b_shift)
    value = carry_shift(value * body.out_mul, body.out_shift) + body.out_offset
    return mem.write(body.out_addr, np.clip(value, 0, 255).astype(np.uint8), f"{name}.out")[:body.count]


def global_pool(body: km.GlobalPoolBody, mem: MainMemory, name: str, layer_type: km.LayerType) -> np.ndarray:
    quantized = layer_type in (km.LayerType.QUANTIZED_GLOBAL_AVERAGE_POOL2D, km.LayerType.QUANTIZED_GLOBAL_MAX_POOL2D)
    data = mem.read(body.in_addr, body.channels * body.kernel_size, "u1" if quantized else "<f4", f"{name}.in")
    data = data.reshape(body.channels, body.kernel_size)
    if body.kernel_size == 0:
        raise PipelineError("kernel_size is 0", field=f"{name}.kernel_size", expected="H*W >= 1")
    if layer_type in (km.LayerType.GLOBAL_MAX_POOL2D, km.LayerType.QUANTIZED_GLOBAL_MAX_POOL2D):
        result = data.max(axis=1)
    elif quantized:
        result = (data.astype(np.int64).sum(axis=1) // body.kernel_size).astype(np.uint8)
    else:
        result = seq_sum(data, axis=1) / F32(body.kernel_size)
    return mem.write(body.out_addr, result, f"{name}.out")


def pool2d(body: km.Pool2dBody, mem: MainMemory, name: str, layer_type: km.LayerType) -> np.ndarray:
    """Max / average pooling with windows clipped to the image (average over in-range pixels)."""
    quantized = layer_type in (km.LayerType.QUANTIZED_MAX_POOL2D, km.LayerType.QUANTIZED_AVERAGE_POOL2D)
    is_max = layer_type in (km.LayerType.QUANTIZED_MAX_POOL2D, km.LayerType.MAX_POOL2D)
    if body.in_channels != body.out_channels or 0 in (body.stride_width, body.stride_height):
        raise PipelineError("pool needs in_channels == out_channels and non-zero strides", field=name)
    dtype = "u1" if quantized else "<f4"
    mem.view(body.out_addr, body.out_channels * body.out_height * body.out_width, dtype, f"{name}.out")
    src = mem.read(body.in_addr, body.in_channels * body.in_height * body.in_width, dtype, f"{name}.in")
    src = src.reshape(body.in_channels, body.in_height, body.in_width)
    oy = np.arange(body.out_height) * body.stride_height - body.padding_height
    ox = np.arange(body.out_width) * body.stride_width - body.padding_width
    acc = np.zeros((body.in_channels, body.out_height, body.out_width), np.int64 if quantized else F32)
    if is_max and not quantized:
        acc[...] = -np.inf
    count = np.zeros((body.out_height, body.out_width), np.int64)
    for ky in range(body.kernel_height):
        for kx in range(body.kernel_width):
            y, x = oy + ky, ox + kx
            valid = ((y >= 0) & (y < body.in_height))[:, None] & ((x >= 0) & (x < body.in_width))[None, :]
            taps = src[:, np.clip(y, 0, body.in_height - 1)][:, :, np.clip(x, 0, body.in_width - 1)]
            taps = np.where(valid, taps, 0 if (quantized or not is_max) else -np.inf).astype(acc.dtype)
            acc = np.maximum(acc, taps) if is_max else acc + taps
            count += valid
    if not is_max:
        acc = acc // np.maximum(count, 1) if quantized else acc / np.maximum(count, 1).astype(F32)
    if not quantized:
        acc = _activation(acc.astype(F32), getattr(body, "act", km.Activation.LINEAR)) if is_max else acc.astype(F32)
    return mem.write(body.out_addr, acc.astype(np.uint8 if quantized else F32), f"{name}.out")


def quantize(body: km.QuantizeBody, mem: MainMemory, name: str) -> np.ndarray:
    """q = clamp(roundf((x - bias) * (1 / scale)), 0, 255), roundf rounding half away from zero."""
    x = mem.read(body.in_addr, body.count, "<f4", f"{name}.in")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value = (x - F32(body.bias)) * (F32(1) / F32(body.scale))
        rounded = np.sign(value) * np.floor(np.abs(value) + F32(0.5))
        q = np.clip(np.nan_to_num(rounded, nan=0.0), 0, 255).astype(np.uint8)
    return mem.write(body.out_addr, q, f"{name}.out")


def dequantize(body: km.QuantizeBody, mem: MainMemory, name: str) -> np.ndarray:
    q = mem.read(body.in_addr, body.count, "u1", f"{name}.in").astype(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        return mem.write(body.out_addr, q * F32(body.scale) + F32(body.bias), f"{name}.out")


def requantize(body: km.RequantizeBody, mem: MainMemory, name: str) -> np.ndarray:
    q = mem.read(body.in_addr, body.count, "u1", f"{name}.in")
    return mem.write(body.out_addr, np.asarray(body.table, np.uint8)[q], f"{name}.out")


def channels_op(body: km.ChannelsBody, mem: MainMemory, name: str, layer_type: km.LayerType) -> np.ndarray:
    """L2_NORMALIZATION, SOFTMAX or LOGISTIC over `channels` float32 values."""
    x = mem.read(body.in_addr, body.channels, "<f4", f"{name}.in")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if layer_type == km.LayerType.L2_NORMALIZATION:
            y = x / np.sqrt(np.maximum(seq_sum(x * x), F32(1e-10)))
        elif layer_type == km.LayerType.SOFTMAX:
            e = np.exp(x - (x.max() if x.size else F32(0)))
            y = e / seq_sum(e)
        else:
            y = F32(1) / (F32(1) + np.exp(-x))
    return mem.write(body.out_addr, y.astype(F32), f"{name}.out")


def concat(body: km.ConcatBody, mem: MainMemory, name: str) -> np.ndarray:
    parts = [mem.read(start, size, "u1", f"{name}.inputs[{i}]") for i, (start, size) in enumerate(body.inputs)]
    joined = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    return mem.write(body.out_addr, joined, f"{name}.out")


def fully_connected(body: km.FullyConnectedBody, mem: MainMemory, name: str) -> np.ndarray:
    x = mem.read(body.in_addr, body.in_channels, "<f4", f"{name}.in")
    with np.errstate(over="ignore", invalid="ignore"):
        y = seq_sum(body.weights.astype(F32) * x[None, :], axis=1) + body.bias.astype(F32)
    return mem.write(body.out_addr, _activation(y.astype(F32), body.act), f"{name}.out")


def flatten(body: km.FlattenBody, mem: MainMemory, name: str, layer_type: km.LayerType) -> np.ndarray:
    dtype = "u1" if layer_type == km.LayerType.QUANTIZED_TENSORFLOW_FLATTEN else "<f4"
    x = mem.read(body.in_addr, body.channels * body.height * body.width, dtype, f"{name}.in")
    hwc = x.reshape(body.channels, body.height, body.width).transpose(1, 2, 0)
    return mem.write(body.out_addr, hwc, f"{name}.out")


def resize_nearest(body: km.ResizeNearestBody, mem: MainMemory, name: str, layer_type: km.LayerType) -> np.ndarray:
    dtype = "u1" if layer_type == km.LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR else "<f4"
    if 0 in (body.out_width, body.out_height):
        raise PipelineError("output size is 0", field=f"{name}.out_width/out_height", expected=">= 1")
    mem.view(body.out_addr, body.channels * body.out_height * body.out_width, dtype, f"{name}.out")
    x = mem.read(body.in_addr, body.channels * body.in_height * body.in_width, dtype, f"{name}.in")
    x = x.reshape(body.channels, body.in_height, body.in_width)
    scale_y = F32(body.in_height) / F32(body.out_height)
    scale_x = F32(body.in_width) / F32(body.out_width)
    rows = np.minimum(np.floor(np.arange(body.out_height, dtype=F32) * scale_y).astype(np.int64), body.in_height - 1)
    cols = np.minimum(np.floor(np.arange(body.out_width, dtype=F32) * scale_x).astype(np.int64), body.in_width - 1)
    return mem.write(body.out_addr, x[:, rows][:, :, cols], f"{name}.out")


def channelwise_dequantize(body: km.ChannelwiseDequantizeBody, mem: MainMemory, name: str) -> np.ndarray:
    q = mem.read(body.in_addr, body.channels * body.channel_size, "u1", f"{name}.in").astype(F32)
    q = q.reshape(body.channels, body.channel_size)
    with np.errstate(over="ignore", invalid="ignore"):
        y = q * body.scale.astype(F32)[:, None] + body.bias.astype(F32)[:, None]
    return mem.write(body.out_addr, y, f"{name}.out")


def add_padding(body: km.AddPaddingBody, mem: MainMemory, ram: np.ndarray, name: str) -> np.ndarray:
    """in[c] to pixel (0, 0) of channel c of a 4x4 KPU map (other pixels untouched)."""
    values = mem.read(body.in_addr, body.channels, "u1", f"{name}.in")
    index = np.arange(body.channels)
    addresses = KPU_LINE_BYTES * body.kpu_out_line + (index // 4) * 4 * KPU_LINE_BYTES + (index % 4) * 16
    if body.channels and addresses[-1] >= len(ram):
        raise PipelineError("padded map runs past the end of KPU RAM", field=f"{name}.kpu_out_line")
    ram[addresses] = values
    return values


def remove_padding(body: km.RemovePaddingBody, mem: MainMemory, name: str) -> np.ndarray:
    values = mem.read(body.in_addr, 16 * body.channels, "u1", f"{name}.in")[::16]
    return mem.write(body.out_addr, values, f"{name}.out")


def upload(body: km.UploadBody, mem: MainMemory, ram: np.ndarray, name: str) -> np.ndarray:
    shape = (body.channels, body.height, body.width)
    data = mem.read(body.in_addr, int(np.prod(shape)), "u1", f"{name}.in").reshape(shape)
    write_map(ram, body.kpu_out_line, data, f"{name}.kpu_out_line")
    return data


MAIN_OPS: dict[km.LayerType, Callable[..., np.ndarray]] = {
    km.LayerType.ADD: add,
    km.LayerType.QUANTIZED_ADD: quantized_add,
    km.LayerType.QUANTIZE: quantize,
    km.LayerType.DEQUANTIZE: dequantize,
    km.LayerType.REQUANTIZE: requantize,
    km.LayerType.CONCAT: concat,
    km.LayerType.QUANTIZED_CONCAT: concat,
    km.LayerType.FULLY_CONNECTED: fully_connected,
    km.LayerType.CHANNELWISE_DEQUANTIZE: channelwise_dequantize,
    km.LayerType.K210_REMOVE_PADDING: remove_padding,
}
TYPED_OPS: dict[km.LayerType, Callable[..., np.ndarray]] = {
    **dict.fromkeys((km.LayerType.GLOBAL_MAX_POOL2D, km.LayerType.QUANTIZED_GLOBAL_MAX_POOL2D,
                     km.LayerType.GLOBAL_AVERAGE_POOL2D, km.LayerType.QUANTIZED_GLOBAL_AVERAGE_POOL2D), global_pool),
    **dict.fromkeys((km.LayerType.MAX_POOL2D, km.LayerType.QUANTIZED_MAX_POOL2D, km.LayerType.AVERAGE_POOL2D,
                     km.LayerType.QUANTIZED_AVERAGE_POOL2D), pool2d),
    **dict.fromkeys((km.LayerType.L2_NORMALIZATION, km.LayerType.SOFTMAX, km.LayerType.LOGISTIC), channels_op),
    **dict.fromkeys((km.LayerType.TENSORFLOW_FLATTEN, km.LayerType.QUANTIZED_TENSORFLOW_FLATTEN), flatten),
    **dict.fromkeys((km.LayerType.RESIZE_NEAREST_NEIGHBOR, km.LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR),
                    resize_nearest),
}
KPU_RAM_OPS: dict[km.LayerType, Callable[..., np.ndarray]] = {
    km.LayerType.K210_ADD_PADDING: add_padding,
    km.LayerType.K210_UPLOAD: upload,
}


def run_cpu_layer(layer: km.Layer, mem: MainMemory, ram: np.ndarray, name: str) -> np.ndarray:
    """Execute one non-KPU layer; returns the array it wrote."""
    if layer.type in MAIN_OPS:
        return MAIN_OPS[layer.type](layer.body, mem, name)
    if layer.type in TYPED_OPS:
        return TYPED_OPS[layer.type](layer.body, mem, name, layer.type)
    if layer.type in KPU_RAM_OPS:
        return KPU_RAM_OPS[layer.type](layer.body, mem, ram, name)
    raise PipelineError(f"layer type {layer.type.name} cannot be executed", field=name,
                        expected="a layer type the V3 runtime executes")
