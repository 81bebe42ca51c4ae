"""Bit-exact KPU layer arithmetic (spec §5): convolution with the three offset terms, batch norm, the 16-segment
activation and the 10 pooling modes, vectorised with NumPy.

`rounding="reference"` is the project reference (nncase v0.2/v1 simulator: round half to even, strict `t > start`,
edge-replicating mean_2_s1, 36-bit range checks); `rounding="v0.1"` is the documented alternative (round half up,
`t >= start`, variable-count edge mean, no range checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.k210.format.registers import ActivationTable, BatchNormTable, KpuLayerArgs
from hardware.k210 import KPU_ACC_BITS, PoolType
from pipeline.errors import PipelineError

ROUNDING_MODES = ("reference", "v0.1")
ACC_LIMIT = 1 << (KPU_ACC_BITS - 1)  # accumulator and BN output must lie in [-2^35, 2^35)


@dataclass
class ConvStages:
    """Intermediate results of one KPU layer (for layer-by-layer comparison with another implementation)."""

    acc: np.ndarray  # int64 (OC, H_in, W_in)
    bn: np.ndarray  # int64 (OC, H_in, W_in)
    activated: np.ndarray  # uint8 (OC, H_in, W_in), before pooling
    output: np.ndarray  # uint8 (OC, H_out, W_out)


def check_rounding(rounding: str) -> None:
    if rounding not in ROUNDING_MODES:
        raise PipelineError(f"unknown rounding {rounding!r}", field="rounding", expected=" or ".join(ROUNDING_MODES))


def _patches(x: np.ndarray, k: int, pad_value: int) -> np.ndarray:
    """(C, k*k, H*W) float64 taps of a stride-1 'same' k x k window, out-of-image taps set to pad_value."""
    channels, height, width = x.shape
    if k == 1:
        return x.reshape(channels, 1, height * width).astype(np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=pad_value).astype(np.float64)
    taps = [padded[:, ky:ky + height, kx:kx + width] for ky in range(3) for kx in range(3)]
    return np.stack(taps, axis=1).reshape(channels, 9, height * width)


def convolve(x: np.ndarray, args: KpuLayerArgs, weights: np.ndarray) -> np.ndarray:
    """acc = S_xw + ((arg_x*S_x) >> shr_x) + ((arg_w*S_w) >> shr_w) + arg_add*N, as int64 (OC, H, W)."""
    in_ch, height, width = x.shape
    out_ch = args.out_channels
    k = args.kernel_size
    taps = _patches(x, k, args.pad_value)
    if args.depth_wise_layer:
        w = weights.reshape(out_ch, k * k).astype(np.float64)
        s_xw = np.einsum("ckp,ck->cp", taps, w)
        s_x = taps.sum(axis=1)
        n_inputs = 1
    else:
        w = weights.reshape(out_ch, in_ch * k * k).astype(np.float64)
        s_xw = w @ taps.reshape(in_ch * k * k, height * width)  # exact: every partial sum < 2^53
        s_x = np.broadcast_to(taps.sum(axis=(0, 1)), (out_ch, height * width))
        n_inputs = in_ch
    s_w = w.sum(axis=1).astype(np.int64)[:, None]
    acc = (s_xw.astype(np.int64) + ((args.arg_x * s_x.astype(np.int64)) >> args.shr_x)
           + ((args.arg_w * s_w) >> args.shr_w) + args.arg_add * n_inputs)
    return acc.reshape(out_ch, height, width)


def batch_norm(acc: np.ndarray, bn: BatchNormTable) -> np.ndarray:
    """t = ((acc * mul) >> shift) + add per output channel (floor shift)."""
    mul, add, shift = (v.astype(np.int64)[:, None, None] for v in (bn.mul, bn.add, bn.shift))
    return ((acc * mul) >> shift) + add


def round_shift(value: np.ndarray, shift: np.ndarray, rounding: str) -> np.ndarray:
    """value / 2^shift rounded half to even (reference) or half up (v0.1); shift 0 returns value unchanged."""
    shift = np.minimum(shift, 62)
    half = (np.int64(1) << shift) >> 1  # 0 when shift is 0
    if rounding == "v0.1":
        return (value + half) >> shift
    # half to even: add half - 1, plus 1 more when the truncated quotient is odd (exact for shift 0 too)
    odd = (value >> shift) & 1
    return np.where(shift > 0, (value + half - 1 + odd) >> shift, value)


def select_segments(t: np.ndarray, starts: np.ndarray, rounding: str) -> np.ndarray:
    """Index of the largest segment i with t > start_i (t >= start_i for v0.1); 0 when there is none."""
    if np.all(starts[1:] >= starts[:-1]):
        found = np.searchsorted(starts, t, side="right" if rounding == "v0.1" else "left") - 1
        return np.maximum(found, 0)
    above = t[:, None] >= starts if rounding == "v0.1" else t[:, None] > starts
    return np.where(above.any(axis=1), len(starts) - 1 - np.argmax(above[:, ::-1], axis=1), 0)


def activate(t: np.ndarray, table: ActivationTable, rounding: str) -> np.ndarray:
    """The 16-segment piecewise-linear table, clamped to uint8."""
    starts = np.asarray(table.x_start, dtype=np.int64)
    flat = t.reshape(-1)
    segment = select_segments(flat, starts, rounding)
    y_mul = np.asarray(table.y_mul, dtype=np.int64)[segment]
    shift = np.asarray(table.shift, dtype=np.int64)[segment]
    bias = np.asarray(table.bias, dtype=np.int64)[segment]
    value = round_shift((flat - starts[segment]) * y_mul, shift, rounding) + bias
    return np.clip(value, 0, 255).astype(np.uint8).reshape(t.shape)


def pool(z: np.ndarray, pool_type: int, rounding: str) -> np.ndarray:
    """The KPU write-back pooling / decimation (spec §5.5) on a (C, H, W) uint8 map."""
    channels, height, width = z.shape
    kind = PoolType(pool_type)
    stride = kind.stride
    out_h, out_w = height // stride, width // stride
    if kind == PoolType.BYPASS:
        return z
    if kind.is_pick:
        column = 1 if kind == PoolType.RIGHT_TOP_2_S2 else 0
        return z[:, 0:out_h * stride:stride, column:out_w * stride:stride][:, :out_h, :out_w]
    if stride > 1:
        windows = z[:, :out_h * stride, :out_w * stride].reshape(channels, out_h, stride, out_w, stride)
        if kind.is_max:
            return windows.max(axis=(2, 4))
        return (windows.astype(np.int64).sum(axis=(2, 4)) // (stride * stride)).astype(np.uint8)
    wide = z.astype(np.int64)
    if kind == PoolType.MAX_2_S1:
        padded = np.pad(wide, ((0, 0), (0, 1), (0, 1)), constant_values=0)
        return np.max([padded[:, dy:dy + height, dx:dx + width] for dy in (0, 1) for dx in (0, 1)],
                      axis=0).astype(np.uint8)
    if rounding == "v0.1":
        padded = np.pad(wide, ((0, 0), (0, 1), (0, 1)), constant_values=0)
        ones = np.pad(np.ones((height, width), np.int64), ((0, 1), (0, 1)), constant_values=0)
        total = sum(padded[:, dy:dy + height, dx:dx + width] for dy in (0, 1) for dx in (0, 1))
        count = sum(ones[dy:dy + height, dx:dx + width] for dy in (0, 1) for dx in (0, 1))
        return (total // count).astype(np.uint8)
    padded = np.pad(wide, ((0, 0), (0, 1), (0, 1)), mode="edge")
    total = sum(padded[:, dy:dy + height, dx:dx + width] for dy in (0, 1) for dx in (0, 1))
    return (total // 4).astype(np.uint8)


def _check_range(values: np.ndarray, what: str, layer: str) -> None:
    if values.size and (values.min() < -ACC_LIMIT or values.max() >= ACC_LIMIT):
        raise PipelineError(f"{what} leaves the 36-bit signed range (min {values.min()}, max {values.max()})",
                            field=layer, expected="the compiler to keep accumulator and BN output within 36 bits")


def run_kpu_layer(x: np.ndarray, args: KpuLayerArgs, weights: np.ndarray, bn: BatchNormTable,
                  table: ActivationTable, rounding: str = "reference", layer: str = "k210_conv") -> ConvStages:
    """One K210_CONV layer on the (C_in, H, W) uint8 map `x`."""
    acc = convolve(x, args, weights)
    if rounding == "reference":
        _check_range(acc, "accumulator", layer)
    t = batch_norm(acc, bn)
    if rounding == "reference":
        _check_range(t, "batch-norm output", layer)
    activated = activate(t, table, rounding)
    return ConvStages(acc=acc, bn=t, activated=activated, output=pool(activated, args.pool_type, rounding))
