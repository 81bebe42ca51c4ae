"""Stride-2 decimation of a KPU map with an odd height or width, on the CPU: the KPU's stride-2 pools floor odd
sizes (7 -> 3), TFLite's centred stride-2 windows ceil them (7 -> 4). The conv runs at full resolution on the KPU and
these three byte-moving CPU layers keep every other pixel, starting at the first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploy.k210.compiler.program import LTensor
from deploy.k210.compiler.tflite_graph import Operator
from deploy.k210.format import kmodel as km

if TYPE_CHECKING:
    from deploy.k210.compiler.lower import Lowering


def decimated_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(C, ceil(H / 2), ceil(W / 2)): the output of a centred stride-2 window on a (C, H, W) map."""
    c, h, w = shape
    return c, -(-h // 2), -(-w // 2)


def decimate(ctx: Lowering, op: Operator, x: LTensor, y: LTensor) -> None:
    """y = x[:, ::2, ::2] on the CPU, for a stride-2 conv on an odd size (the KPU's stride-2 pools floor it): a
    QUANTIZED_TENSORFLOW_FLATTEN to HWC, a QUANTIZED_CONCAT gathering the kept pixels' C bytes each, and a
    flatten of that (pixels, 1, C) matrix back to CHW. The HWC intermediates are stored as (pixels, 1, C)."""
    c, h, w = x.shape
    pixels = [(row * w + col) * c for row in range(0, h, 2) for col in range(0, w, 2)]
    if y.shape != decimated_shape(x.shape):
        raise ctx.fail(op, f"output {y.shape} is not every other pixel of {x.shape}", "a stride-2 conv")
    hwc, gathered = ctx.temp((h * w, 1, c), "u8", x.quant), ctx.temp((len(pixels), 1, c), "u8", x.quant)
    ctx.cpu(op, km.LayerType.QUANTIZED_TENSORFLOW_FLATTEN, [x], hwc,
            lambda a: km.FlattenBody(0, a.main(x.name), a.main(hwc.name), w, h, c))
    ctx.cpu(op, km.LayerType.QUANTIZED_CONCAT, [hwc], gathered, lambda a: km.ConcatBody(
        0, a.main(gathered.name), len(pixels), [(a.main(hwc.name) + offset, c) for offset in pixels]))
    ctx.cpu(op, km.LayerType.QUANTIZED_TENSORFLOW_FLATTEN, [gathered], y,
            lambda a: km.FlattenBody(0, a.main(gathered.name), a.main(y.name), c, 1, len(pixels)))
