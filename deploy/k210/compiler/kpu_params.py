"""Derive the arithmetic of one KPU layer from TFLite quantization (spec §5.2-5.4, §6.5 v1 convention).

KPU values are uint8 = int8 + 128. Weights are stored as q_w + 128 (zero point 128), so with
arg_x = -128, arg_w = -z_x, arg_add = k*k*128*z_x (all shifts 0) the accumulator is exactly TFLite's
sum((q_x - z_x) * q_w). The batch norm turns it into t = 2^F * (output code before rounding), folding each
channel's weight scale into its multiplier; the activation table rounds t / 2^F and applies the activation.

16-bit weights (the kmodel's global 16-bit mode, compile.weight_bits) follow the same convention one width up:
symmetric per-channel codes stored as q_w + 32768, arg_x = -32768 (inside the 24-bit signed field, shr_x 0),
arg_add = k*k*32768*z_x; the BN multiplier takes the 16-bit weight scale, which is what makes the codes finer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deploy.k210.format.registers import X_START_MAX, ActivationTable, BatchNormTable
from deploy.k210.sim.kpu_arith import activate
from hardware.k210 import ACTIVATION_SEGMENTS, BN_FIELDS, KPU_ACC_BITS
from pipeline.errors import PipelineError

BN_MUL_BITS = BN_FIELDS[0].width - 1  # |norm_mul| < 2^23 (a 24-bit signed field)
BN_MAX_SHIFT = (1 << BN_FIELDS[2].width) - 1
T_LIMIT_BITS = KPU_ACC_BITS - 2  # keep |t| < 2^34, inside the 36-bit signed range with margin
MIN_FRACTION_BITS = 4
MAX_FRACTION_BITS = 20
SAMPLES_PER_CODE = 16  # points per conv output code cell when a fused table's linear pieces are placed


def weight_zero_point(weight_bits: int) -> int:
    """The stored code of weight 0: 128 for 8-bit weights, 32768 for 16-bit ones (symmetric codes made unsigned)."""
    return 1 << (weight_bits - 1)


@dataclass(frozen=True)
class Quant:
    """uint8 quantization on the KPU side: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def code(self, real: float) -> int:
        return int(np.clip(round(real / self.scale + self.zero_point), 0, 255))


@dataclass(frozen=True)
class Clamp:
    """The output code range the table clamps to (the conv's fused RELU / RELU6 / RELU_N1_TO_1, or none)."""

    low: int = 0
    high: int = 255


@dataclass
class ConvArithmetic:
    pad_value: int
    arg_x: int
    arg_w: int
    arg_add: int
    bn: BatchNormTable
    activation: ActivationTable
    fraction_bits: int


def _fraction_bits(multipliers: np.ndarray, weight_abs_sums: np.ndarray, bias: np.ndarray, out_zero: int,
                   where: str) -> int:
    """The largest F that keeps norm_mul, norm_add and t inside their fields for every channel."""
    m_max = float(multipliers.max()) if multipliers.size else 0.0
    t_bound = float(np.max(255 * weight_abs_sums * multipliers + np.abs(bias * multipliers))) + 256
    add_bound = float(np.max(np.abs(bias * multipliers + out_zero))) + 1
    limits = [MAX_FRACTION_BITS, math.floor(T_LIMIT_BITS - math.log2(t_bound)),
              math.floor(30.9 - math.log2(add_bound))]
    if m_max > 0:
        limits.append(math.floor(BN_MUL_BITS - 1e-9 - math.log2(m_max)) - 1)
    bits = min(limits)
    if bits < MIN_FRACTION_BITS:
        raise PipelineError(f"requantization needs {bits} fraction bits (accumulator bound {t_bound:.3g} output "
                            f"codes, multiplier {m_max:.3g})", field=where,
                            expected=f">= {MIN_FRACTION_BITS} fraction bits: the KPU's 36-bit batch-norm output and "
                                     "24-bit multiplier cannot hold this layer; re-calibrate or add batch "
                                     "normalization so the output range is closer to the accumulator range")
    return bits


def batch_norm_words(multipliers: np.ndarray, bias: np.ndarray, out_zero: int, bits: int) -> BatchNormTable:
    """Per channel (mul, shift) ~ M * 2^bits with mul < 2^23, shift <= 15; add = (bias*M + zero) * 2^bits."""
    muls, shifts = [], []
    for m in multipliers:
        if m <= 0:
            muls.append(0)
            shifts.append(0)
            continue
        exponent = math.floor(math.log2(m))
        shift = int(np.clip(BN_MUL_BITS - 1 - bits - exponent, 0, BN_MAX_SHIFT))
        mul = round(m * 2.0 ** (bits + shift))
        while mul >= 1 << BN_MUL_BITS and shift > 0:
            shift -= 1
            mul = round(m * 2.0 ** (bits + shift))
        muls.append(mul)
        shifts.append(shift)
    add = np.round((bias * multipliers + out_zero) * 2.0 ** bits).astype(np.int64)
    return BatchNormTable(mul=np.array(muls, np.int64), add=add, shift=np.array(shifts, np.int64))


def clamp_table(low: int, high: int, bits: int) -> ActivationTable:
    """u = clamp(round(t / 2^bits), low, high)."""
    table = ActivationTable()
    table.bias[0] = low
    table.x_start[1], table.y_mul[1], table.shift[1], table.bias[1] = low << bits, 1, bits, low
    if high < 255:
        table.x_start[2], table.bias[2] = high << bits, high
        for i in range(3, 16):
            table.bias[i] = high
    return table


def conv_arithmetic(input_q: Quant, kernel: int, weights_q: np.ndarray, weight_scales: np.ndarray,
                    bias_q: np.ndarray, output_q: Quant, clamp: Clamp, where: str,
                    weight_bits: int = 8) -> ConvArithmetic:
    """All arithmetic fields of a KPU conv. `weights_q` are signed weight codes (int8, or int16 with
    `weight_bits` 16) grouped per output channel (axis 0); `bias_q` is in accumulator units (input scale times the
    channel's weight scale)."""
    multipliers = (input_q.scale * weight_scales.astype(np.float64)) / output_q.scale
    abs_sums = np.abs(weights_q.reshape(len(weights_q), -1).astype(np.int64)).sum(axis=1).astype(np.float64)
    bias = bias_q.astype(np.float64)
    bits = _fraction_bits(multipliers, abs_sums, bias, output_q.zero_point, where)
    bn = batch_norm_words(multipliers, bias, output_q.zero_point, bits)
    table = clamp_table(clamp.low, clamp.high, bits)
    z, zero_w = input_q.zero_point, weight_zero_point(weight_bits)
    return ConvArithmetic(pad_value=z, arg_x=-zero_w, arg_w=-z, arg_add=kernel * kernel * zero_w * z, bn=bn,
                          activation=table, fraction_bits=bits)


def leaky_multipliers(input_q: Quant, output_q: Quant, alpha: float) -> tuple[int, int]:
    """LiteRT's (XNNPACK qs8 vlrelu) 8.8 fixed-point multipliers (positive slope, negative slope) of a LeakyReLU
    from `input_q` codes to `output_q` codes."""
    scale = np.float32(input_q.scale) / np.float32(output_q.scale)
    slopes = (int(np.rint(np.float32(256) * scale)), int(np.rint(np.float32(256) * np.float32(alpha) * scale)))
    if not all(0 <= m < 1 << 15 for m in slopes):
        raise PipelineError(f"LeakyReLU multipliers {slopes}", field="alpha",
                            expected="0 <= alpha and input/output scale ratio below 128")
    return slopes


def xnnpack_leaky_arithmetic(input_q: Quant, output_q: Quant, alpha: float, channels: int,
                             weight_bits: int = 8) -> ConvArithmetic:
    """LeakyReLU on uint8 codes exactly as LiteRT's default CPU kernel (XNNPACK qs8 vlrelu) computes it:
    out = z_out + floor((d * m + 128) / 256) for d = x - z_in, with m = lrint(256 * s_in / s_out) for d >= 0 and
    m = lrint(256 * alpha * s_in / s_out) for d < 0.

    Used as a depthwise 1x1 layer with unit weights: acc = d, t = d * 2^F + z_out * 2^F. Each linear piece is
    anchored at its lowest integer d with the bias one below its output there, so the start offset is positive
    and the product lands strictly between rounding ties (both rounding modes agree).
    """
    bits = MAX_FRACTION_BITS
    slopes = leaky_multipliers(input_q, output_q, alpha)
    zero_t = output_q.zero_point << bits
    table = ActivationTable()
    segment = 1
    for low, high, m in ((-input_q.zero_point, -1, slopes[1]), (0, 255 - input_q.zero_point, slopes[0])):
        outputs = [output_q.zero_point + ((d * m + 128) >> 8) for d in range(low, high + 1)]
        anchor = next((low + i for i, value in enumerate(outputs) if value >= 1), None)
        if anchor is None:
            continue
        value = output_q.zero_point + ((anchor * m + 128) >> 8)
        remainder = anchor * m + 128 - ((value - output_q.zero_point) << 8) + 256
        offset = -(-(((remainder - 128) << bits) + 1) // max(m, 1))
        table.x_start[segment] = zero_t + (anchor << bits) - offset
        table.y_mul[segment], table.shift[segment], table.bias[segment] = m, bits + 8, value - 1
        segment += 1
    bn = BatchNormTable(mul=np.full(channels, 1 << bits, np.int64), add=np.full(channels, zero_t, np.int64),
                        shift=np.zeros(channels, np.int64))
    z, zero_w = input_q.zero_point, weight_zero_point(weight_bits)
    return ConvArithmetic(pad_value=z, arg_x=-zero_w, arg_w=-z, arg_add=zero_w * z, bn=bn, activation=table,
                          fraction_bits=bits)


def leaky_levels(conv_q: Quant, output_q: Quant, alpha: float) -> np.ndarray:
    """LiteRT's LeakyReLU output code for every conv output code 0..255 (what the two-layer path computes)."""
    m_pos, m_neg = leaky_multipliers(conv_q, output_q, alpha)
    d = np.arange(256, dtype=np.int64) - conv_q.zero_point
    return np.clip(output_q.zero_point + ((d * np.where(d >= 0, m_pos, m_neg) + 128) >> 8), 0, 255)


def _exact_cells(levels: np.ndarray, zero: int, spare: int) -> tuple[list[int], list[int], bool]:
    """The cells that get constant segments, nearest the zero point first: below it the codes where LiteRT's
    output steps (each constant covers a whole plateau), above it single codes. Also whether a linear piece is
    still needed below the zero point (for the steps that did not fit)."""
    steps = [c for c in range(1, zero) if levels[c] != levels[c - 1]]

    def nearest(budget: int) -> tuple[list[int], list[int]]:
        chosen = sorted([(zero - c, 0, c) for c in steps] + [(c - zero, 1, c) for c in range(zero, 256)])[:budget]
        return sorted(c for _, side, c in chosen if side == 0), sorted(c for _, side, c in chosen if side == 1)

    below, above = nearest(spare)
    if len(below) < len(steps):
        below, above = nearest(spare - 1)
    return below, above, len(below) < len(steps)


def _sample_points(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(t, conv code) for SAMPLES_PER_CODE evenly spaced points inside every conv output code cell."""
    codes = np.repeat(np.arange(256, dtype=np.int64), SAMPLES_PER_CODE)
    offsets = np.tile((2 * np.arange(SAMPLES_PER_CODE) + 1 - SAMPLES_PER_CODE) << bits, 256)
    return (codes << bits) + offsets // (2 * SAMPLES_PER_CODE), codes


def _place_linear(table: ActivationTable, index: int, slope: int, conv_zero: int, out_zero: int, bits: int,
                  levels: np.ndarray) -> None:
    """Segment `index` as out_zero + R((v - conv_zero) * slope / 256) for conv code v = t / 2^bits.

    A segment rounds (t - x_start) * y_mul, so its start must sit where that line takes a whole value (the bias
    adds the rest): of the admissible starts near the intended one (x_start[index] on entry) keep the one whose
    table is off LiteRT's levels by more than 1 LSB least often, then off at all least often."""
    shift = bits + 8
    zero_t = conv_zero << bits
    edge = table.x_start[index]
    table.y_mul[index], table.shift[index] = slope, shift
    if slope == 0:
        table.bias[index] = int(np.clip(out_zero, 0, 255))
        return
    nearest = round((zero_t - edge) * slope / 2 ** shift)
    t, codes = _sample_points(bits)
    upper = table.x_start[index + 1] if index + 1 < ACTIVATION_SEGMENTS else X_START_MAX + 1
    best = None
    for steps in range(nearest - 2, nearest + 3):
        start = zero_t - round(steps * 2 ** shift / slope)
        bias = out_zero - steps
        if not (0 <= bias <= 255 and table.x_start[index - 1] < start < upper):
            continue
        table.x_start[index], table.bias[index] = start, bias
        diff = np.abs(activate(t, table, "reference").astype(np.int64) - levels[codes])
        misses = (int(np.count_nonzero(diff > 1)), int(np.count_nonzero(diff)))
        if best is None or misses < best[0]:
            best = (misses, start, bias)
    if best is None:
        raise PipelineError(f"no start for a LeakyReLU segment of slope {slope}/256 near t = {edge}",
                            field="compile.fuse_leaky", expected="false (the two-layer LeakyReLU path)")
    table.x_start[index], table.bias[index] = best[1], best[2]


def fused_leaky_table(conv_q: Quant, output_q: Quant, alpha: float, bits: int) -> ActivationTable:
    """A conv's table that applies a following LeakyReLU: t = 2^bits * v, v the conv output code before rounding,
    mapped straight to the LeakyReLU output tensor's codes.

    LiteRT rounds v to a conv code c (clamped to 0..255) and requantizes c with slope m/256 (m from
    `leaky_multipliers`, one per side of the zero point). That double rounding is a step function of v which one
    linear segment per side only follows to within 1 LSB, so the spare segments hold LiteRT's exact output as
    constants over the cells nearest the zero point (where most values fall): whole output plateaus below it,
    single codes above it. Segment 0 holds the output of code 0, a last one that of code 255 when it is below 255.
    """
    levels = leaky_levels(conv_q, output_q, alpha)
    m_pos, m_neg = leaky_multipliers(conv_q, output_q, alpha)
    zero = conv_q.zero_point
    top = bool(levels[255] < 255)
    below, above, linear_below = _exact_cells(levels, zero, ACTIVATION_SEGMENTS - 2 - top)
    first_linear = zero + len(above)
    pieces = [(1, m_neg)] if linear_below else []
    pieces += [(c, None) for c in below + above]
    pieces += [(first_linear, m_pos)] if first_linear < 255 else []
    pieces += [(255, None)] if first_linear <= 255 and (top or first_linear == 255) else []
    table = ActivationTable()
    table.bias[0] = int(levels[0])
    for index, (code, _) in enumerate(pieces, start=1):
        table.x_start[index] = ((2 * code - 1) << (bits - 1)) - 1  # t > x_start  <=>  v >= code - 1/2
        table.bias[index] = int(levels[code])
    for index, (_, slope) in enumerate(pieces, start=1):
        if slope is not None:
            _place_linear(table, index, slope, zero, output_q.zero_point, bits, levels)
    return table


def identity_arithmetic(channels: int, weight_bits: int = 8) -> ConvArithmetic:
    """A one-hot (weight 1 = stored 129, or 32769 in 16-bit mode) layer that copies input bytes unchanged: acc = x,
    t = x, u = t."""
    table = ActivationTable()
    table.x_start[1], table.y_mul[1] = 0, 1
    bn = BatchNormTable(mul=np.ones(channels, np.int64), add=np.zeros(channels, np.int64),
                        shift=np.zeros(channels, np.int64))
    return ConvArithmetic(pad_value=0, arg_x=-weight_zero_point(weight_bits), arg_w=0, arg_add=0, bn=bn,
                          activation=table, fraction_bits=0)


def kpu_weights(weights_q: np.ndarray, weight_bits: int = 8) -> np.ndarray:
    """Signed weight codes as stored for the KPU, flattened: int8 as uint8 (zero point 128), or int16 as uint16
    (zero point 32768)."""
    stored = weights_q.astype(np.int32) + weight_zero_point(weight_bits)
    return stored.astype(np.uint8 if weight_bits == 8 else np.uint16).reshape(-1)

