"""Lowerings of the ops that run on the CPU: requantize tables, float32 layers between DEQUANTIZE and QUANTIZE,
QUANTIZED_ADD / MAX_POOL2D / CONCAT, and the ops that only rename a tensor (reshape, identity quantize)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from deploy.k210.compiler.conv_geometry import same_pads
from deploy.k210.compiler.kpu_params import Quant
from deploy.k210.compiler.lower_kpu import clamp_of, one_hot, padded_fully_connected
from deploy.k210.compiler.passes import adjacent_concat as adjacent
from deploy.k210.compiler.passes.fuse_pool import kpu_pool_type
from deploy.k210.compiler.program import KpuStep, LTensor
from deploy.k210.compiler.tflite_graph import Operator
from deploy.k210.format import kmodel as km
from hardware.k210 import KPU_MAX_CHANNELS
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from deploy.k210.compiler.lower import Lowering

ADD_FRACTION_BITS = 20
FLOAT_FUNCTIONS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "RELU": lambda x, _: np.maximum(x, 0),
    "RELU6": lambda x, _: np.clip(x, 0, 6),
    "RELU_N1_TO_1": lambda x, _: np.clip(x, -1, 1),
    "LEAKY_RELU": lambda x, alpha: np.where(x >= 0, x, alpha * x),
    "LOGISTIC": lambda x, _: 1 / (1 + np.exp(-x)),
    "TANH": lambda x, _: np.tanh(x),
    "HARD_SWISH": lambda x, _: x * np.clip(x + 3, 0, 6) / 6,
}


def quantized_add_body(qa: Quant, qb: Quant, qo: Quant, count: int) -> km.QuantizedAddBody:
    """QUANTIZED_ADD parameters for out = (s_a (a - z_a) + s_b (b - z_b)) / s_o + z_o, rounded half up.

    The SDK's carry_shift rounds negative values oddly, so both inputs get +2^20 (every product positive) with
    multipliers m = round(s / s_o * 2^20) and output shift 20: the added constants are exactly m_a + m_b output
    codes, removed again through the output offset.
    """
    bits = ADD_FRACTION_BITS
    muls = [round(q.scale / qo.scale * 2 ** bits) for q in (qa, qb)]
    if not all(0 < m < 2 ** 31 for m in muls):
        raise PipelineError(f"ADD input/output scale ratios {[q.scale / qo.scale for q in (qa, qb)]}", field="ADD",
                            expected="input/output scale ratios between 2^-20 and 2^11")
    return km.QuantizedAddBody(0, 0, 0, 0, count, (1 << bits) - qa.zero_point, muls[0], 0,
                               (1 << bits) - qb.zero_point, muls[1], 0, qo.zero_point - sum(muls), 1, bits)


def requantize(ctx: Lowering, op: Operator, x: LTensor, y: LTensor,
               function: Callable[[np.ndarray], np.ndarray]) -> None:
    codes = np.arange(256, dtype=np.float64)
    real = function(x.quant.scale * (codes - x.quant.zero_point))
    table = np.clip(np.round(real / y.quant.scale + y.quant.zero_point), 0, 255).astype(np.uint8)
    count = int(np.prod(x.shape))
    ctx.cpu(op, km.LayerType.REQUANTIZE, [x], y,
             lambda a: km.RequantizeBody(0, a.main(x.name), a.main(y.name), count, table))

def quantize(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    q = ctx.quant(op.outputs[0], op)
    if math.isclose(q.scale, x.quant.scale, rel_tol=1e-6) and q.zero_point == x.quant.zero_point:
        ctx.alias(op.outputs[0], x)
        return
    requantize(ctx, op, x, ctx.define(op.outputs[0], op), lambda r: r)

def elementwise(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    alpha = float(op.options.get("Alpha", 0.0))
    function = FLOAT_FUNCTIONS[op.opcode]
    requantize(ctx, op, x, ctx.define(op.outputs[0], op), lambda r: function(r, alpha))

def float_op(ctx: Lowering, op: Operator, x: LTensor, out_index: int, out_shape: tuple[int, int, int],
             layer_type: km.LayerType, body: Callable, macs: int = 0) -> None:
    """DEQUANTIZE -> float32 layer -> QUANTIZE with TFLite's output quantization."""
    xf = ctx.temp(x.shape, "f32")
    dequantize_step(ctx, op, x, xf)
    yf = ctx.temp(out_shape, "f32")
    ctx.cpu(op, layer_type, [xf], yf, lambda a: body(a.main(xf.name), a.main(yf.name)), macs=macs)
    y = ctx.define(out_index, op, out_shape)
    count = int(np.prod(out_shape))
    scale = np.float32(y.quant.scale)
    ctx.cpu(op, km.LayerType.QUANTIZE, [yf], y, lambda a: km.QuantizeBody(
        0, a.main(yf.name), a.main(y.name), count, float(scale), float(-y.quant.zero_point * scale)))

def dequantize_step(ctx: Lowering, op: Operator, x: LTensor, xf: LTensor) -> None:
    count = int(np.prod(x.shape))
    scale = np.float32(x.quant.scale)
    ctx.cpu(op, km.LayerType.DEQUANTIZE, [x], xf, lambda a: km.QuantizeBody(
        0, a.main(x.name), a.main(xf.name), count, float(scale), float(np.float32(-x.quant.zero_point * scale))))

def max_pool(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    o = op.options
    if o.get("FusedActivationFunction", "NONE") != "NONE":
        raise ctx.fail(op, "pool with a fused activation", "a separate activation op after the pool")
    c, h, w = x.shape
    _, oh, ow = ctx.chw(op.outputs[0], op)
    kh, kw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
    ph = same_pads(h, kh, sh)[0] if o["Padding"] == "SAME" else 0
    pw = same_pads(w, kw, sw)[0] if o["Padding"] == "SAME" else 0
    y = ctx.define(op.outputs[0], op)
    if y.quant != x.quant:
        raise ctx.fail(op, "max pool changes the quantization", "identical input and output quantization")
    pool = kpu_pool_type(op, x.shape)
    if pool and any(isinstance(step, KpuStep) and step.output == x.name for step in ctx.prog.steps):
        # the map is in KPU RAM already (e.g. the passthrough branch point): pool it there with a copy layer
        one_hot(ctx, op, x, y, [(channel, 0, 0) for channel in range(c)], 1, pool)
        return
    ctx.cpu(op, km.LayerType.QUANTIZED_MAX_POOL2D, [x], y, lambda a: km.Pool2dBody(
        0, a.main(x.name), a.main(y.name), w, h, c, ow, oh, c, kw, kh, sw, sh, pw, ph),
        elements=c * oh * ow * kh * kw)

def average_pool(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    o = op.options
    c, h, w = x.shape
    out_shape = ctx.chw(op.outputs[0], op)
    kh, kw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
    ph = same_pads(h, kh, sh)[0] if o["Padding"] == "SAME" else 0
    pw = same_pads(w, kw, sw)[0] if o["Padding"] == "SAME" else 0
    act = {"NONE": 0, "RELU": 1, "RELU6": 2}.get(o.get("FusedActivationFunction", "NONE"))
    if act:
        raise ctx.fail(op, "average pool with a fused activation (the SDK ignores it)", "a separate activation")
    float_op(ctx, op, x, op.outputs[0], out_shape, km.LayerType.AVERAGE_POOL2D, lambda i, j: km.FloatPool2dBody(
        0, i, j, w, h, c, out_shape[2], out_shape[1], c, kw, kh, sw, sh, pw, ph, act=0))

def mean(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    axes = ctx.g.tensors[op.inputs[1]].data
    if axes is None or sorted(int(v) for v in np.asarray(axes).reshape(-1)) != [1, 2]:
        raise ctx.fail(op, f"MEAN over axes {axes}", "a mean over height and width (global average pooling)")
    c, h, w = x.shape
    float_op(ctx, op, x, op.outputs[0], (c, 1, 1), km.LayerType.GLOBAL_AVERAGE_POOL2D,
                  lambda i, j: km.GlobalPoolBody(0, i, j, h * w, c))

def fully_connected(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    weights = ctx.g.tensors[op.inputs[1]]
    if weights.data is None or weights.dtype != "int8" or np.any(weights.zero_point != 0):
        raise ctx.fail(op, f"weights '{weights.name}' are not constant symmetric int8", "int8 weights")
    c, h, w = x.shape
    out_ch, in_ch = weights.shape
    if in_ch != c * h * w:
        raise ctx.fail(op, f"{in_ch} inputs for a {c}x{h}x{w} map", "a flattened input of matching size")

    def layout(matrix: np.ndarray) -> np.ndarray:  # TFLite flattens HWC; the kmodel keeps maps as CHW
        return matrix.reshape(out_ch, h, w, c).transpose(0, 3, 1, 2).reshape(out_ch, in_ch) if h * w > 1 else matrix

    w_q = layout(weights.data)
    scales = np.broadcast_to(weights.scale.astype(np.float64), (out_ch,))
    bias_t = ctx.g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    bias_q = np.zeros(out_ch, np.int64) if bias_t is None or bias_t.data is None else \
        bias_t.data.astype(np.int64).reshape(-1)
    act = {"NONE": 0, "RELU": 1, "RELU6": 2}.get(op.options.get("FusedActivationFunction", "NONE"))
    if act is None:
        raise ctx.fail(op, "unsupported fused activation", "NONE, RELU or RELU6")
    if ctx.kpu_fc and x.dtype == "u8" and in_ch <= KPU_MAX_CHANNELS and out_ch <= KPU_MAX_CHANNELS:
        padded_fully_connected(ctx, op, x, w_q, scales, bias_q, clamp_of(ctx, op), layout)
        return
    w_f = (w_q.astype(np.float64) * scales[:, None]).astype(np.float32)
    bias = (bias_q * scales * x.quant.scale).astype(np.float32)
    float_op(ctx, op, x, op.outputs[0], (out_ch, 1, 1), km.LayerType.FULLY_CONNECTED,
                  lambda i, j: km.FullyConnectedBody(0, i, j, in_ch, out_ch, act, w_f, bias), macs=in_ch * out_ch)

def softmax(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    if x.shape[1:] != (1, 1) or op.options.get("Beta", 1.0) != 1.0:
        raise ctx.fail(op, f"softmax over a {x.shape} map with beta {op.options.get('Beta')}",
                        "softmax with beta 1 over a vector (after a Dense layer)")
    float_op(ctx, op, x, op.outputs[0], x.shape, km.LayerType.SOFTMAX,
                  lambda i, j: km.ChannelsBody(0, i, j, x.shape[0]))

def add(ctx: Lowering, op: Operator) -> None:
    a, b = ctx.lt(op.inputs[0], op), ctx.lt(op.inputs[1], op)
    if a.shape != b.shape:
        raise ctx.fail(op, f"ADD of {a.shape} and {b.shape}", "two tensors of the same shape (no broadcast)")
    act = op.options.get("FusedActivationFunction", "NONE")
    out_q = ctx.quant(op.outputs[0], op)
    y = ctx.define(op.outputs[0], op, a.shape) if act == "NONE" else ctx.temp(a.shape, "u8", out_q)
    body = quantized_add_body(a.quant, b.quant, out_q, int(np.prod(a.shape)))
    ctx.cpu(op, km.LayerType.QUANTIZED_ADD, [a, b], y, lambda ad: dataclasses.replace(
        body, in_a_addr=ad.main(a.name), in_b_addr=ad.main(b.name), out_addr=ad.main(y.name)))
    if act != "NONE":
        function = {"RELU": FLOAT_FUNCTIONS["RELU"], "RELU6": FLOAT_FUNCTIONS["RELU6"]}.get(act)
        if function is None:
            raise ctx.fail(op, f"fused activation {act}", "NONE, RELU or RELU6")
        requantize(ctx, op, y, ctx.define(op.outputs[0], op, a.shape), lambda r: function(r, 0.0))

def concat(ctx: Lowering, op: Operator) -> None:
    parts = [ctx.lt(i, op) for i in op.inputs]
    rank = len(ctx.g.tensors[op.outputs[0]].shape)
    if op.options.get("Axis") not in (-1, rank - 1) or rank != 4:
        raise ctx.fail(op, f"concatenation along axis {op.options.get('Axis')}",
                        "concatenation along the channel axis of NHWC maps")
    if op.options.get("FusedActivationFunction", "NONE") != "NONE":
        raise ctx.fail(op, "concatenation with a fused activation", "no fused activation")
    y = ctx.define(op.outputs[0], op)
    kpu_consumers_only = op.outputs[0] not in ctx.g.outputs and all(
        user.opcode in adjacent.KPU_OPS for user in ctx.g.consumers(op.outputs[0]))
    if adjacent.match(ctx.prog, parts, y, kpu_consumers_only=kpu_consumers_only):
        adjacent.rewrite(parts, y)
        return
    inputs = []
    for part in parts:
        if part.quant != y.quant:
            converted = ctx.temp(part.shape, "u8", y.quant)
            requantize(ctx, op, part, converted, lambda r: r)
            part = converted
        inputs.append(part)
    ctx.cpu(op, km.LayerType.QUANTIZED_CONCAT, inputs, y, lambda a: km.ConcatBody(
        0, a.main(y.name), len(inputs), [(a.main(t.name), t.size) for t in inputs]))

def reshape(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    shape = ctx.g.tensors[op.outputs[0]].shape
    c, h, w = x.shape
    flat_vector = tuple(shape) == (1, c * h * w)
    keeps_grid = len(shape) >= 3 and tuple(shape[:3]) == (1, h, w) and int(np.prod(shape[3:])) == c
    if not (flat_vector or keeps_grid):
        raise ctx.fail(op, f"reshape of a {c}x{h}x{w} map to {shape}",
                        "a flatten before FULLY_CONNECTED, or a split of the channel axis (YOLO heads)")
    if flat_vector and h * w > 1 and any(u.opcode != "FULLY_CONNECTED" for u in ctx.g.consumers(op.outputs[0])):
        raise ctx.fail(op, "a flattened spatial map feeds an op other than FULLY_CONNECTED",
                        "flatten only directly before a Dense layer (or use global average pooling)")
    ctx.alias(op.outputs[0], x)

def dequantize(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    xf = ctx.temp(x.shape, "f32")
    dequantize_step(ctx, op, x, xf)
    ctx.alias(op.outputs[0], xf)

