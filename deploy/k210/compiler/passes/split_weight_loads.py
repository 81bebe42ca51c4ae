"""Split weight loads: a KPU layer whose weights need more than KPU_MAX_WEIGHT_LOADS loads becomes several layers,
each computing a slice of the output channels into consecutive channel blocks of the same output map (and of its
main-memory copy)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from deploy.k210.compiler.kpu_params import Quant
from deploy.k210.compiler.program import KpuStep, LTensor
from deploy.k210.format.registers import BatchNormTable
from hardware.k210 import KPU_MAX_WEIGHT_LOADS, row_layout, weight_load_bytes


def channels_per_layer(step: KpuStep) -> int:
    """Output channels one KPU layer computes within the weight loads (a multiple of the output's line groups, so
    slices land in whole channel blocks); 0 when one output channel alone exceeds a load."""
    if step.depthwise:
        return step.out_shape[0]
    per_load = weight_load_bytes(step.weight_bits) // (step.kernel ** 2 * step.in_shape[0] * step.weights.itemsize)
    groups = row_layout(step.out_shape[2])[0]
    return (per_load * KPU_MAX_WEIGHT_LOADS) // groups * groups


def split(step: KpuStep, chunk: int, output: LTensor,
          new_slice: Callable[[tuple[int, int, int], Quant | None], LTensor]) -> list[KpuStep]:
    """`step` as layers of at most `chunk` output channels; `new_slice` makes the tensor of one channel slice."""
    out_ch = step.out_shape[0]
    if chunk >= out_ch:
        return [step]
    weights = step.weights.reshape(out_ch, -1)
    bn = step.arithmetic.bn
    parts = []
    for start in range(0, out_ch, chunk):
        stop = min(start + chunk, out_ch)
        part = new_slice((stop - start,) + step.out_shape[1:], output.quant)
        part.kpu_parent = (output.name, start)
        arithmetic = dataclasses.replace(step.arithmetic, bn=BatchNormTable(
            mul=bn.mul[start:stop], add=bn.add[start:stop], shift=bn.shift[start:stop]))
        parts.append(dataclasses.replace(
            step, output=part.name, out_shape=part.shape, weights=weights[start:stop].reshape(-1),
            arithmetic=arithmetic, source=f"{step.source} [channels {start}:{stop}]"))
    return parts
