"""Lowerings of the ops that run on the KPU: convolutions (with what the passes fused into them), the LeakyReLU
layer, one-hot copy layers (decimation, pooling in KPU RAM, SPACE_TO_DEPTH) and the PAD folded into a conv."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from deploy.k210.compiler.conv_geometry import conv_input, conv_pads
from deploy.k210.compiler.decimate_cpu import decimate, decimated_shape
from deploy.k210.compiler.kpu_params import (
    Clamp,
    conv_arithmetic,
    fused_leaky_table,
    identity_arithmetic,
    kpu_weights,
    xnnpack_leaky_arithmetic,
)
from deploy.k210.compiler.passes.fuse_activation import activated_output, activation_output
from deploy.k210.compiler.program import LTensor
from deploy.k210.compiler.tflite_graph import Operator
from deploy.k210.format import kmodel as km
from hardware.k210 import KPU_KERNELS, PoolType

if TYPE_CHECKING:
    from deploy.k210.compiler.lower import Lowering


def clamp_of(ctx: Lowering, op: Operator) -> Clamp:
    """The output code range of the conv's table: its fused activation or the RELU/RELU6 fused after it."""
    kind = op.options.get("FusedActivationFunction", "NONE")
    q = ctx.quant(op.outputs[0], op)
    if "clamp" in op.attrs:
        kind = op.attrs["clamp"].opcode
        q = ctx.quant(activated_output(op), op.attrs["clamp"])
    if kind == "RELU":
        return Clamp(low=q.code(0.0))
    if kind == "RELU6":
        return Clamp(low=q.code(0.0), high=q.code(6.0))
    if kind == "RELU_N1_TO_1":
        return Clamp(low=q.code(-1.0), high=q.code(1.0))
    if kind != "NONE":
        raise ctx.fail(op, f"fused activation {kind}", "NONE, RELU, RELU6 or a separate LEAKY_RELU")
    return Clamp()


def conv(ctx: Lowering, op: Operator) -> None:
    depthwise = op.opcode == "DEPTHWISE_CONV_2D"
    x = ctx.lt(conv_input(op), op)
    decimate_input = "decimate_input" in op.attrs
    channels, height, width = x.shape
    weights = ctx.g.tensors[op.inputs[1]]
    if weights.data is None or weights.dtype != "int8" or np.any(weights.zero_point != 0):
        raise ctx.fail(op, f"weights '{weights.name}' are not constant symmetric int8",
                       "int8 weights with zero point 0 (TFLite full-integer quantization)")
    if depthwise and weights.shape[3] != channels:
        raise ctx.fail(op, f"depth multiplier {weights.shape[3] // max(channels, 1)}",
                       "depth_multiplier 1 (the KPU depthwise mode maps channel c to channel c)")

    def layout(kernel: np.ndarray) -> np.ndarray:  # TFLite 1HWC (depthwise) or OHWI -> C k k or OIHW
        return kernel[0].transpose(2, 0, 1) if depthwise else kernel.transpose(0, 3, 1, 2)

    w_q = layout(weights.data)
    out_ch, k = w_q.shape[0], w_q.shape[-1]
    o = op.options
    stride = o.get("StrideH", 1)
    if w_q.shape[-2] != k or k not in KPU_KERNELS:
        raise ctx.fail(op, f"kernel {w_q.shape[-2]}x{k}", "a 1x1 or 3x3 kernel (the only KPU kernels)")
    if (o.get("DilationHFactor", 1), o.get("DilationWFactor", 1)) != (1, 1) or o.get("StrideW", 1) != stride \
            or stride not in (1, 2):
        raise ctx.fail(op, f"stride {o.get('StrideH')}x{o.get('StrideW')}, dilation "
                           f"{o.get('DilationHFactor')}x{o.get('DilationWFactor')}",
                       "stride 1 or 2 in both directions and dilation 1")
    pads = conv_pads(ctx.g, op)
    if pads is None:
        raise ctx.fail(op, f"input map of shape {ctx.g.tensors[conv_input(op)].shape}", "a batch-1 NHWC input map")
    centred = (1, 1) if k == 3 else (0, 0)
    if len(pads) != 1 or next(iter(pads)) not in ({centred} | ({(0, 1)} if stride == 2 and k == 3 else set())):
        raise ctx.fail(op, f"padding {sorted(pads)} for a {k}x{k} stride-{stride} conv",
                       "'same' padding (3x3 stride 1), or for stride 2 PAD((1,1),(1,1)) + VALID or 'same'")
    shifted = next(iter(pads)) == (0, 1)
    bias = ctx.g.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    bias = np.zeros(out_ch, np.int64) if bias is None else bias.astype(np.int64).reshape(-1)
    scales = np.broadcast_to(weights.scale.astype(np.float64), (out_ch,))
    activation = clamp_of(ctx, op)
    out_index = activated_output(op)
    leaky = op.attrs.get("leaky")
    pool = op.attrs.get("pool", PoolType.BYPASS)
    final_index = op.attrs["pool_op"].outputs[0] if "pool_op" in op.attrs else activation_output(op)
    y_q = ctx.quant(out_index, op)
    w_q, scales, bias, bits = ctx.layer_weights(op, w_q, scales, bias, x.quant, layout)
    arithmetic = conv_arithmetic(x.quant, k, w_q, scales, bias, y_q, activation, f"operators[{op.index}]", bits)
    if leaky is not None and ctx.fuse_leaky:
        # the table maps the conv's BN output straight to the LeakyReLU tensor's codes
        leaky_q = ctx.quant(leaky.outputs[0], leaky)
        arithmetic.activation = fused_leaky_table(y_q, leaky_q, float(leaky.options.get("Alpha", 0.2)),
                                                  arithmetic.fraction_bits)
        leaky, y_q = None, leaky_q
    defer = "defer_decimation" in op.attrs
    odd = stride == 2 and bool(height % 2 or width % 2)  # decimated on the CPU (decimate_cpu)
    direct = (stride == 2 and not depthwise and not shifted and not odd) or decimate_input
    half = (out_ch,) + decimated_shape(x.shape)[1:]
    out_shape = half if direct else (out_ch, height, width)
    if pool:
        out_shape = ctx.chw(final_index, op)
    if (stride == 2 or decimate_input) and ctx.chw(final_index, op) != half:
        raise ctx.fail(op, f"output {ctx.chw(final_index, op)} is not half of {height}x{width}",
                       "a stride-2 conv whose output is half the input size (rounded up)")
    conv_out = ctx.define(final_index, op, out_shape) if leaky is None and (direct or stride == 1 or defer) \
        else ctx.temp(out_shape, "u8", y_q)
    ctx.kpu_step(op, input=x.name, output=conv_out.name, in_shape=x.shape, out_shape=out_shape, kernel=k,
                 depthwise=depthwise, pool_type=PoolType.LEFT_TOP_2_S2 if direct else pool,
                 weights=kpu_weights(w_q, bits), arithmetic=arithmetic)
    if odd:
        if leaky is not None:  # elementwise: runs on the KPU at full resolution, before the CPU decimation
            activated = ctx.temp(out_shape, "u8", ctx.quant(leaky.outputs[0], leaky))
            leaky_layer(ctx, leaky, conv_out, activated)
            conv_out = activated
        decimate(ctx, op, conv_out, ctx.define(final_index, op, half))
        return
    if stride == 2 and not direct and not defer:
        decimated = ctx.define(final_index, op) if leaky is None else \
            ctx.temp((out_ch, height // 2, width // 2), "u8", y_q)
        taps = [(c, 2, 1) if shifted else (c, 0, 0) for c in range(out_ch)]
        one_hot(ctx, op, conv_out, decimated, taps, 3 if shifted else 1,
                PoolType.RIGHT_TOP_2_S2 if shifted else PoolType.LEFT_TOP_2_S2)
        conv_out = decimated
    if leaky is not None:
        leaky_layer(ctx, leaky, conv_out, ctx.define(final_index, leaky, conv_out.shape))


def leaky_layer(ctx: Lowering, op: Operator, x: LTensor, y: LTensor) -> None:
    """LeakyReLU as a depthwise 1x1 KPU layer with unit weights, rounding like LiteRT's CPU kernel."""
    channels = x.shape[0]
    ones = np.ones((channels, 1, 1), np.int8)
    bits = ctx.weight_bits(op)
    arithmetic = xnnpack_leaky_arithmetic(x.quant, y.quant, float(op.options.get("Alpha", 0.2)), channels, bits)
    ctx.kpu_step(op, input=x.name, output=y.name, in_shape=x.shape, out_shape=y.shape, kernel=1,
                 depthwise=True, pool_type=PoolType.BYPASS, weights=kpu_weights(ones, bits), arithmetic=arithmetic)


def one_hot(ctx: Lowering, op: Operator, x: LTensor, y: LTensor, taps: list[tuple[int, int, int]], kernel: int,
            pool: PoolType) -> None:
    """A KPU layer copying input channel taps[o][0] at kernel tap (ky, kx) to output channel o, then `pool`."""
    weights = np.zeros((len(taps), x.shape[0], kernel, kernel), np.int8)
    for out_c, (in_c, ky, kx) in enumerate(taps):
        weights[out_c, in_c, ky, kx] = 1
    bits = ctx.weight_bits(op)
    ctx.kpu_step(op, input=x.name, output=y.name, in_shape=x.shape, out_shape=y.shape, kernel=kernel,
                 depthwise=False, pool_type=pool, weights=kpu_weights(weights, bits),
                 arithmetic=identity_arithmetic(len(taps), bits))


def pad(ctx: Lowering, op: Operator) -> None:
    """A PAD that passes/fold_pad folded into its convs emits nothing; any other PAD is refused."""
    if "folded" not in op.attrs:
        raise ctx.fail(op, "PAD is only supported as the ((1,1),(1,1)) padding of a following 3x3 VALID conv",
                       "ZeroPadding2D(1) directly before a 3x3 Conv2D/DepthwiseConv2D with padding='valid'")
    ctx.lt(op.inputs[0], op)


def space_to_depth(ctx: Lowering, op: Operator) -> None:
    x = ctx.lt(op.inputs[0], op)
    block = op.options.get("BlockSize")
    channels, height, width = x.shape
    if block != 2 or height % 2 or width % 2:
        raise ctx.fail(op, f"block size {block} on {height}x{width}", "block size 2 on even height and width")
    if ctx.quant(op.outputs[0], op) != x.quant:
        raise ctx.fail(op, "output quantization differs from the input", "the converter's identical scales")
    y = ctx.define(op.outputs[0], op)
    taps = [(c, 1 + dy, 1 + dx) for dy in (0, 1) for dx in (0, 1) for c in range(channels)]
    one_hot(ctx, op, x, y, taps, 3, PoolType.LEFT_TOP_2_S2)


def padded_fully_connected(ctx: Lowering, op: Operator, x: LTensor, w_q: np.ndarray, scales: np.ndarray,
                           bias: np.ndarray, clamp: Clamp, layout: Callable[[np.ndarray], np.ndarray]) -> None:
    """FULLY_CONNECTED on the KPU in nncase's 4x4-padded form: K210_ADD_PADDING puts the input vector (CHW order,
    `w_q` permuted to match) into pixel (0, 0) of a 4x4 map's channels, a 1x1 KPU conv with one filter per output
    computes all 16 pixels (the other 15 read stale KPU RAM and are discarded), K210_REMOVE_PADDING reads pixel
    (0, 0) of each output channel back. uint8 (or 16-bit) weights and the conv's exact integer requantization;
    `layout` turns the TFLite weight matrix into `w_q`'s (for a 16-bit layer's float twin)."""
    w_q, scales, bias, bits = ctx.layer_weights(op, w_q, scales, bias, x.quant, layout)
    out_ch, in_ch = w_q.shape
    padded = ctx.temp((in_ch, 4, 4), "u8", x.quant)
    ctx.cpu(op, km.LayerType.K210_ADD_PADDING, [x], padded,
            lambda a: km.AddPaddingBody(0, a.main(x.name), a.kpu(padded.name), in_ch), elements=in_ch)
    y_q = ctx.quant(op.outputs[0], op)
    weights = w_q.reshape(out_ch, in_ch, 1, 1)
    conv_out = ctx.temp((out_ch, 4, 4), "u8", y_q)
    ctx.kpu_step(op, input=padded.name, output=conv_out.name, in_shape=padded.shape, out_shape=conv_out.shape,
                 kernel=1, depthwise=False, pool_type=PoolType.BYPASS, weights=kpu_weights(weights, bits),
                 arithmetic=conv_arithmetic(x.quant, 1, weights, scales, bias, y_q, clamp, f"operators[{op.index}]",
                                            bits))
    y = ctx.define(op.outputs[0], op, (out_ch, 1, 1))
    ctx.cpu(op, km.LayerType.K210_REMOVE_PADDING, [conv_out], y,
            lambda a: km.RemovePaddingBody(0, a.main(conv_out.name), a.main(y.name), out_ch), elements=out_ch)
