"""Lower a full-integer TFLite graph to KPU and CPU steps (spec §5.6, §6.4, §7.4).

Rules (each violation raises one PipelineError naming the TFLite op and tensor, the KPU rule, and the fix):
- CONV_2D / DEPTHWISE_CONV_2D: 1x1 or 3x3, dilation 1, stride 1 or 2. 3x3 stride 1 needs 'same' padding.
  Stride 2 with padding (1, 1) (explicit PAD + VALID) is a 'same' conv with left_top_2_s2 decimation; TF 'SAME'
  on even sizes pads (0, 1), whose windows centre on odd pixels: the conv runs at full resolution and a one-hot
  KPU layer (tap one row down, right_top_2_s2) picks the odd rows and columns. Depthwise layers never pool
  (the chip rule of §1.4): a stride-2 depthwise conv runs at full resolution and its decimation moves into the
  following 1x1 conv (they commute), or into a one-hot copy layer when no 1x1 conv follows.
- A fused or following RELU / RELU6 becomes the clamp of the conv's table. A following LEAKY_RELU becomes its own
  depthwise 1x1 KPU layer whose table reproduces LiteRT's rounding exactly (conv rounds to its tensor, then
  LeakyReLU requantizes), or with `fuse_leaky` is folded into the conv's table as nncase does (one KPU layer, ~4 %
  fewer cycles). One rounding cannot follow LiteRT's two: per layer about a quarter of the values land 1 LSB off,
  and over a trained 10-25 layer detector that drifts to 88-94 % of output bytes within 1 LSB (cosine 0.9992-0.9996)
  instead of >= 99.9 %, hence off by default. A following 2x2 s2, 2x2 s1 'same' or 4x4 s4
  MAX/AVERAGE_POOL_2D goes into the write-back pool (with a separate LeakyReLU layer only max pools, which commute
  with it); a KPU-resident map with several consumers is pooled by a one-hot copy layer.
- SPACE_TO_DEPTH (the DarkNet19 passthrough) is one KPU 3x3 conv with one-hot weights (out channel
  (dy*2+dx)*C+c reads input channel c at tap (1+dy, 1+dx)) plus left_top_2_s2. Chosen over a CPU layer because
  kmodel V3 has no space-to-depth CPU layer (it would need a per-byte CONCAT gather plus DMA out and upload);
  the KPU version is exact, stays in KPU RAM and costs 36*C^2 weight bytes.
- A conv whose weights need more than 64 loads of 30 KiB is split into several KPU layers over slices of its
  output channels, written into consecutive channel blocks of one map (and one main-memory block).
- CONCATENATION along channels writes its KPU-produced inputs into adjacent line ranges of one map when the
  quantization agrees and each channel count fills whole line groups; otherwise a CPU CONCAT (with REQUANTIZE
  of inputs whose quantization differs).
- ADD is QUANTIZED_ADD on the CPU; MEAN over H, W (global average pool), AVERAGE_POOL_2D that cannot fuse,
  FULLY_CONNECTED and SOFTMAX run in float32 between DEQUANTIZE and QUANTIZE with TFLite's tensor
  quantization (the SDK runs these in float; the K210_ADD_PADDING 4x4 KPU form of FC is not used);
  MAX_POOL_2D that cannot run on the KPU is QUANTIZED_MAX_POOL2D; other elementwise activations are REQUANTIZE
  tables. Every model output gets a DEQUANTIZE so the kmodel returns float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from deploy.k210.compiler.kpu_params import (
    Clamp,
    Quant,
    conv_arithmetic,
    fused_leaky_table,
    identity_arithmetic,
    kpu_weights,
    xnnpack_leaky_arithmetic,
)
from deploy.k210.compiler.program import CpuStep, KpuStep, LTensor, Program
from deploy.k210.compiler.tflite_graph import Graph, Operator
from deploy.k210.format import kmodel as km
from deploy.k210.format.registers import BatchNormTable
from deploy.k210.sim.kpu_ram import row_layout
from pipeline.errors import PipelineError

KPU_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "SPACE_TO_DEPTH", "PAD"}
MAX_CHANNELS = 1024
MAX_WIDTH = 512
MAX_HEIGHT = 256
MIN_SIZE = 4
WEIGHT_LOAD_BYTES = 30 * 1024
MAX_LOADS = 64
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


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


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


def kpu_pool_type(op: Operator, shape: tuple[int, int, int]) -> int:
    """The KPU write-back pool type equal to this MAX/AVERAGE_POOL_2D on a (C, H, W) map, or 0 if there is none."""
    o = op.options
    is_max = op.opcode == "MAX_POOL_2D"
    _, h, w = shape
    k, s = o.get("FilterWidth"), o.get("StrideW")
    if o.get("FusedActivationFunction", "NONE") != "NONE" or (k, s) != (o.get("FilterHeight"), o.get("StrideH")):
        return 0
    if k == 2 and s == 2 and (o.get("Padding") == "VALID" or (h % 2 == 0 and w % 2 == 0)):
        return 1 if is_max else 2
    if k == 4 and s == 4 and (o.get("Padding") == "VALID" or (h % 4 == 0 and w % 4 == 0)):
        return 3 if is_max else 4
    if k == 2 and s == 1 and o.get("Padding") == "SAME":
        return 9 if is_max else 8
    return 0


class Lowering:
    """One pass over the TFLite operators in order, building a Program."""

    def __init__(self, graph: Graph, fuse_leaky: bool = False) -> None:
        self.g = graph
        self.fuse_leaky = fuse_leaky
        self.prog = Program(tensors={})
        self.name_of: dict[int, str] = {}
        self.fused: set[int] = set()
        self.padded: dict[int, int] = {}  # PAD output -> PAD input, folded into the following conv
        self.decimate_next: set[str] = set()  # full-resolution maps whose 1x1 consumer applies left_top_2_s2
        self.temp_count = 0

    # ---- errors and tensors -------------------------------------------------------------------------------
    def fail(self, op: Operator, rule: str, change: str) -> PipelineError:
        out = self.g.tensors[op.outputs[0]].name if op.outputs else "?"
        return PipelineError(f"TFLite op #{op.index} {op.opcode} (output tensor '{out}'): {rule}", path=self.g.path,
                             field=f"operators[{op.index}]", expected=change)

    def quant(self, index: int, op: Operator) -> Quant:
        t = self.g.tensors[index]
        if t.dtype not in ("int8", "uint8") or t.scale.size != 1:
            raise self.fail(op, f"tensor '{t.name}' is {t.dtype} with {t.scale.size} scales; the KPU path needs "
                                "uint8/int8 activations with one scale", "a full-integer model (int8 inside, "
                                                                          "uint8 input/output)")
        return Quant(float(t.scale[0]), int(t.zero_point[0]) + (128 if t.dtype == "int8" else 0))

    def chw(self, index: int, op: Operator) -> tuple[int, int, int]:
        shape = self.g.tensors[index].shape
        if len(shape) == 4 and shape[0] == 1:
            return shape[3], shape[1], shape[2]
        if len(shape) == 2 and shape[0] == 1:
            return shape[1], 1, 1
        raise self.fail(op, f"tensor shape {shape}", "batch 1 NHWC (1,H,W,C) or (1,N) tensors")

    def lt(self, index: int, op: Operator) -> LTensor:
        if index not in self.name_of:
            raise self.fail(op, f"input tensor '{self.g.tensors[index].name}' is not produced by a supported op",
                            "a model made of the supported ops (see deploy/k210/lower.py)")
        return self.prog.tensors[self.name_of[index]]

    def define(self, index: int, op: Operator, shape: tuple[int, int, int] | None = None) -> LTensor:
        tensor = LTensor(name=f"t{index}", shape=shape or self.chw(index, op), dtype="u8", quant=self.quant(index, op))
        self.prog.tensors[tensor.name] = tensor
        self.name_of[index] = tensor.name
        return tensor

    def temp(self, shape: tuple[int, int, int], dtype: str, quant: Quant | None = None) -> LTensor:
        self.temp_count += 1
        tensor = LTensor(name=f"tmp{self.temp_count}", shape=shape, dtype=dtype, quant=quant)
        self.prog.tensors[tensor.name] = tensor
        return tensor

    def sole_consumer(self, index: int) -> Operator | None:
        users = self.g.consumers(index)
        if len(users) != 1 or index in self.g.outputs:
            return None
        return users[0]

    # ---- driver -------------------------------------------------------------------------------------------
    def run(self) -> Program:
        if len(self.g.inputs) != 1:
            raise PipelineError(f"{len(self.g.inputs)} inputs", path=self.g.path, field="subgraphs[0].inputs",
                                expected="exactly one image input")
        index = self.g.inputs[0]
        t = self.g.tensors[index]
        if t.dtype != "uint8" or len(t.shape) != 4 or t.shape[0] != 1:
            raise PipelineError(f"input tensor '{t.name}' is {t.dtype} {t.shape}", path=self.g.path,
                                field="input", expected="uint8 (1, H, W, C): convert with inference_input_type="
                                                        "tf.uint8")
        first = Operator(-1, "INPUT", [], [index])
        self.prog.input = self.define(index, first).name
        handlers = {
            "QUANTIZE": self.quantize, "CONV_2D": self.conv, "DEPTHWISE_CONV_2D": self.conv, "PAD": self.pad,
            "MAX_POOL_2D": self.max_pool, "AVERAGE_POOL_2D": self.average_pool, "SPACE_TO_DEPTH": self.space_to_depth,
            "CONCATENATION": self.concat, "ADD": self.add, "MEAN": self.mean, "FULLY_CONNECTED": self.fully_connected,
            "SOFTMAX": self.softmax, "RESHAPE": self.reshape, "DEQUANTIZE": self.dequantize,
            **dict.fromkeys(FLOAT_FUNCTIONS, self.elementwise),
        }
        for op in self.g.operators:
            if op.index in self.fused or self.computes_shape_only(op):
                continue
            if op.opcode not in handlers:
                raise self.fail(op, "this op has no K210 lowering",
                                "a model using only " + ", ".join(sorted(handlers)))
            try:
                handlers[op.opcode](op)
            except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
                raise self.fail(op, f"malformed operator ({type(exc).__name__}: {exc})",
                                "a valid TFLite model as written by tf.lite.TFLiteConverter") from None
        for index in self.g.outputs:
            self.model_output(index)
        return self.prog

    def computes_shape_only(self, op: Operator) -> bool:
        """Ops such as SHAPE/STRIDED_SLICE/PACK that only build a RESHAPE's integer shape (Keras Flatten)."""
        outputs = [self.g.tensors[i] for i in op.outputs]
        return bool(outputs) and all(t.dtype in ("int32", "int64") for t in outputs) and op.opcode != "MEAN"

    # ---- KPU convolutions -------------------------------------------------------------------------------
    def kpu_step(self, op: Operator, **fields) -> None:
        """Append a KPU layer; one whose weights need more than 64 loads becomes several layers, each computing a
        slice of the output channels into consecutive channel blocks of the same output map."""
        step = KpuStep(source=f"#{op.index} {op.opcode}", **fields)
        self.check_kpu_shapes(op, step)
        chunk = self.channels_per_layer(op, step)
        out_ch = step.out_shape[0]
        if chunk >= out_ch:
            self.prog.steps.append(step)
            return
        weights = step.weights.reshape(out_ch, -1)
        parent = self.prog.tensors[step.output]
        for start in range(0, out_ch, chunk):
            stop = min(start + chunk, out_ch)
            part = self.temp((stop - start,) + step.out_shape[1:], "u8", parent.quant)
            part.kpu_parent = (parent.name, start)
            bn = step.arithmetic.bn
            arithmetic = dataclasses.replace(step.arithmetic, bn=BatchNormTable(
                mul=bn.mul[start:stop], add=bn.add[start:stop], shift=bn.shift[start:stop]))
            self.prog.steps.append(dataclasses.replace(
                step, output=part.name, out_shape=part.shape, weights=weights[start:stop].reshape(-1),
                arithmetic=arithmetic, source=f"{step.source} [channels {start}:{stop}]"))

    def channels_per_layer(self, op: Operator, step: KpuStep) -> int:
        """Output channels one KPU layer can compute within 64 weight loads (a multiple of the output's line
        groups, so that slices land in whole channel blocks)."""
        if step.depthwise:
            return step.out_shape[0]
        per_channel = step.kernel ** 2 * step.in_shape[0]
        per_load = WEIGHT_LOAD_BYTES // per_channel
        groups = row_layout(step.out_shape[2])[0]
        chunk = (per_load * MAX_LOADS) // groups * groups
        if per_load == 0 or chunk == 0:
            raise self.fail(op, f"one output channel needs {per_channel} weight bytes, more than a "
                                f"{WEIGHT_LOAD_BYTES}-byte weight load", "fewer input channels for this layer")
        return chunk

    def check_kpu_shapes(self, op: Operator, step: KpuStep) -> None:
        for label, (c, h, w) in (("input", step.in_shape), ("output", step.out_shape)):
            if not (MIN_SIZE <= h <= MAX_HEIGHT and MIN_SIZE <= w <= MAX_WIDTH and 1 <= c <= MAX_CHANNELS):
                raise self.fail(op, f"KPU {label} map {c}x{h}x{w} (CxHxW) is outside the KPU limits",
                                f"{MIN_SIZE} <= H <= {MAX_HEIGHT}, {MIN_SIZE} <= W <= {MAX_WIDTH}, "
                                f"C <= {MAX_CHANNELS}: change the input size or channel count")

    def fused_output(self, op: Operator, out_index: int) -> tuple[int, Clamp, Operator | None]:
        """The conv's clamp (fused activation or a following RELU/RELU6 op) and a following LEAKY_RELU op (folded
        into the conv's table, or its own 1x1 KPU layer)."""
        kind = op.options.get("FusedActivationFunction", "NONE")
        q = self.quant(out_index, op)
        nxt = self.sole_consumer(out_index)
        if kind == "NONE" and nxt is not None and nxt.opcode in ("RELU", "RELU6"):
            self.fused.add(nxt.index)
            out_index, kind = nxt.outputs[0], nxt.opcode
            q = self.quant(out_index, nxt)
            nxt = self.sole_consumer(out_index)
        leaky = None
        if kind == "NONE" and nxt is not None and nxt.opcode == "LEAKY_RELU":
            self.fused.add(nxt.index)
            leaky = nxt
        if kind == "RELU":
            return out_index, Clamp(low=q.code(0.0)), leaky
        if kind == "RELU6":
            return out_index, Clamp(low=q.code(0.0), high=q.code(6.0)), leaky
        if kind == "RELU_N1_TO_1":
            return out_index, Clamp(low=q.code(-1.0), high=q.code(1.0)), leaky
        if kind != "NONE":
            raise self.fail(op, f"fused activation {kind}", "NONE, RELU, RELU6 or a separate LEAKY_RELU")
        return out_index, Clamp(), leaky

    def fused_pool(self, out_index: int, shape: tuple[int, int, int], max_only: bool = False) -> tuple[int, int]:
        """(pool_type, final tensor) when the sole consumer is a pool the KPU write-back can do, else (0, same)."""
        nxt = self.sole_consumer(out_index)
        if nxt is None or nxt.opcode not in (("MAX_POOL_2D",) if max_only else ("MAX_POOL_2D", "AVERAGE_POOL_2D")):
            return 0, out_index
        if self.quant(nxt.outputs[0], nxt) != self.quant(out_index, nxt):
            return 0, out_index
        pool = kpu_pool_type(nxt, shape)
        if pool:
            self.fused.add(nxt.index)
            return pool, nxt.outputs[0]
        return 0, out_index

    def conv(self, op: Operator) -> None:
        depthwise = op.opcode == "DEPTHWISE_CONV_2D"
        x_index = op.inputs[0]
        explicit_pad = x_index in self.padded
        if explicit_pad:
            x_index = self.padded[x_index]
        x = self.lt(x_index, op)
        decimate_input = x.name in self.decimate_next
        channels, height, width = x.shape
        weights = self.g.tensors[op.inputs[1]]
        if weights.data is None or weights.dtype != "int8" or np.any(weights.zero_point != 0):
            raise self.fail(op, f"weights '{weights.name}' are not constant symmetric int8",
                            "int8 weights with zero point 0 (TFLite full-integer quantization)")
        if depthwise:
            if weights.shape[3] != channels:
                raise self.fail(op, f"depth multiplier {weights.shape[3] // max(channels, 1)}",
                                "depth_multiplier 1 (the KPU depthwise mode maps channel c to channel c)")
            w_q = weights.data[0].transpose(2, 0, 1)
        else:
            w_q = weights.data.transpose(0, 3, 1, 2)
        out_ch, k = w_q.shape[0], w_q.shape[-1]
        o = op.options
        stride = o.get("StrideH", 1)
        if w_q.shape[-2] != k or k not in (1, 3):
            raise self.fail(op, f"kernel {w_q.shape[-2]}x{k}", "a 1x1 or 3x3 kernel (the only KPU kernels)")
        if (o.get("DilationHFactor", 1), o.get("DilationWFactor", 1)) != (1, 1) or o.get("StrideW", 1) != stride \
                or stride not in (1, 2):
            raise self.fail(op, f"stride {o.get('StrideH')}x{o.get('StrideW')}, dilation "
                                f"{o.get('DilationHFactor')}x{o.get('DilationWFactor')}",
                            "stride 1 or 2 in both directions and dilation 1")
        if explicit_pad:
            pads = {(1, 1)} if o.get("Padding") == "VALID" else {(-1, -1)}
        elif o.get("Padding") == "SAME":
            pads = {same_pads(height, k, stride), same_pads(width, k, stride)}
        else:
            pads = {(0, 0)}
        centred = (1, 1) if k == 3 else (0, 0)
        if stride == 2 and (height % 2 or width % 2):
            raise self.fail(op, f"stride 2 on an odd size {height}x{width}",
                            "even input height and width (KPU decimation floors odd sizes)")
        if len(pads) != 1 or next(iter(pads)) not in ({centred} | ({(0, 1)} if stride == 2 and k == 3 else set())):
            raise self.fail(op, f"padding {sorted(pads)} for a {k}x{k} stride-{stride} conv",
                            "'same' padding (3x3 stride 1), or for stride 2 PAD((1,1),(1,1)) + VALID or 'same'")
        shifted = next(iter(pads)) == (0, 1)
        bias = self.g.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        bias = np.zeros(out_ch, np.int64) if bias is None else bias.astype(np.int64).reshape(-1)
        scales = np.broadcast_to(weights.scale.astype(np.float64), (out_ch,))
        out_index, activation, leaky = self.fused_output(op, op.outputs[0])
        pool, final_index = (0, out_index if leaky is None else leaky.outputs[0])
        if stride == 1 and not depthwise and not decimate_input:
            # a fused LeakyReLU's table writes the LeakyReLU tensor itself; past a separate LeakyReLU layer only max
            # pooling stays on the conv (it commutes with the monotonic LeakyReLU)
            pool, final_index = self.fused_pool(final_index, (out_ch, height, width),
                                                max_only=leaky is not None and not self.fuse_leaky)
        y_q = self.quant(out_index, op)
        arithmetic = conv_arithmetic(x.quant, k, w_q, scales, bias, y_q, activation, f"operators[{op.index}]")
        if leaky is not None and self.fuse_leaky:
            # the table maps the conv's BN output straight to the LeakyReLU tensor's codes
            leaky_q = self.quant(leaky.outputs[0], leaky)
            arithmetic.activation = fused_leaky_table(y_q, leaky_q, float(leaky.options.get("Alpha", 0.2)),
                                                      arithmetic.fraction_bits)
            leaky, y_q = None, leaky_q
        # a stride-2 depthwise conv runs at full resolution; a following 1x1 conv (which commutes with the
        # subsampling) applies its left_top_2_s2, as nncase's K210SeparableConv2dTransform does
        defer = stride == 2 and depthwise and not shifted and self.takes_decimation(final_index)
        direct = (stride == 2 and not depthwise and not shifted) or decimate_input
        out_shape = (out_ch, height // 2, width // 2) if direct else (out_ch, height, width)
        if pool:
            out_shape = self.chw(final_index, op)
        if (stride == 2 or decimate_input) and self.chw(final_index, op) != (out_ch, height // 2, width // 2):
            raise self.fail(op, f"output {self.chw(final_index, op)} is not half of {height}x{width}",
                            "a stride-2 conv whose output is exactly half the input size")
        conv_out = self.define(final_index, op, out_shape) if leaky is None and (direct or stride == 1 or defer) \
            else self.temp(out_shape, "u8", y_q)
        self.kpu_step(op, input=x.name, output=conv_out.name, in_shape=x.shape, out_shape=out_shape, kernel=k,
                      depthwise=depthwise, pool_type=5 if direct else pool, weights=kpu_weights(w_q),
                      arithmetic=arithmetic)
        if defer:
            self.decimate_next.add(f"t{final_index}")
        elif stride == 2 and not direct:
            decimated = self.define(final_index, op) if leaky is None else \
                self.temp((out_ch, height // 2, width // 2), "u8", y_q)
            taps = [(c, 2, 1) if shifted else (c, 0, 0) for c in range(out_ch)]
            self.one_hot(op, conv_out, decimated, taps, 3 if shifted else 1, 6 if shifted else 5)
            conv_out = decimated
        if leaky is not None:
            self.leaky_layer(leaky, conv_out, self.define(final_index, leaky, conv_out.shape))

    def takes_decimation(self, index: int) -> bool:
        """Whether the only consumer of a tensor is a stride-1 1x1 CONV_2D (which can subsample for it)."""
        user = self.sole_consumer(index)
        if user is None or user.opcode != "CONV_2D":
            return False
        o = user.options
        return self.g.tensors[user.inputs[1]].shape[1:3] == (1, 1) and (o.get("StrideH"), o.get("StrideW")) == (1, 1)

    def leaky_layer(self, op: Operator, x: LTensor, y: LTensor) -> None:
        """LeakyReLU as a depthwise 1x1 KPU layer with unit weights, rounding like LiteRT's CPU kernel."""
        channels = x.shape[0]
        ones = np.ones((channels, 1, 1), np.int8)
        arithmetic = xnnpack_leaky_arithmetic(x.quant, y.quant, float(op.options.get("Alpha", 0.2)), channels)
        self.kpu_step(op, input=x.name, output=y.name, in_shape=x.shape, out_shape=y.shape, kernel=1,
                      depthwise=True, pool_type=0, weights=kpu_weights(ones), arithmetic=arithmetic)

    def one_hot(self, op: Operator, x: LTensor, y: LTensor, taps: list[tuple[int, int, int]], kernel: int,
                pool: int) -> None:
        """A KPU layer copying input channel taps[o][0] at kernel tap (ky, kx) to output channel o, then `pool`."""
        weights = np.zeros((len(taps), x.shape[0], kernel, kernel), np.int8)
        for out_c, (in_c, ky, kx) in enumerate(taps):
            weights[out_c, in_c, ky, kx] = 1
        self.kpu_step(op, input=x.name, output=y.name, in_shape=x.shape, out_shape=y.shape, kernel=kernel,
                      depthwise=False, pool_type=pool, weights=kpu_weights(weights),
                      arithmetic=identity_arithmetic(len(taps)))

    def pad(self, op: Operator) -> None:
        paddings = self.g.tensors[op.inputs[1]].data
        users = self.g.consumers(op.outputs[0])
        ok = paddings is not None and np.array_equal(np.asarray(paddings).reshape(-1), [0, 0, 1, 1, 1, 1, 0, 0])
        for user in users:
            ok = ok and user.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D") and user.options.get("Padding") == "VALID"
            ok = ok and self.g.tensors[user.inputs[1]].shape[1:3] == (3, 3)
        if not ok or not users or op.outputs[0] in self.g.outputs:
            raise self.fail(op, "PAD is only supported as the ((1,1),(1,1)) padding of a following 3x3 VALID conv",
                            "ZeroPadding2D(1) directly before a 3x3 Conv2D/DepthwiseConv2D with padding='valid'")
        self.lt(op.inputs[0], op)
        self.padded[op.outputs[0]] = op.inputs[0]

    def space_to_depth(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        block = op.options.get("BlockSize")
        channels, height, width = x.shape
        if block != 2 or height % 2 or width % 2:
            raise self.fail(op, f"block size {block} on {height}x{width}", "block size 2 on even height and width")
        if self.quant(op.outputs[0], op) != x.quant:
            raise self.fail(op, "output quantization differs from the input", "the converter's identical scales")
        y = self.define(op.outputs[0], op)
        taps = [(c, 1 + dy, 1 + dx) for dy in (0, 1) for dx in (0, 1) for c in range(channels)]
        self.one_hot(op, x, y, taps, 3, 5)

    # ---- CPU layers -------------------------------------------------------------------------------------
    def cpu(self, op: Operator, layer_type: km.LayerType, inputs: list[LTensor], output: LTensor,
            build: Callable, elements: int = 0, macs: int = 0) -> None:
        self.prog.steps.append(CpuStep(source=f"#{op.index} {op.opcode}", layer_type=layer_type,
                                       inputs=[t.name for t in inputs], output=output.name, build=build,
                                       elements=elements or int(np.prod(output.shape)), macs=macs))

    def requantize(self, op: Operator, x: LTensor, y: LTensor, function: Callable[[np.ndarray], np.ndarray]) -> None:
        codes = np.arange(256, dtype=np.float64)
        real = function(x.quant.scale * (codes - x.quant.zero_point))
        table = np.clip(np.round(real / y.quant.scale + y.quant.zero_point), 0, 255).astype(np.uint8)
        count = int(np.prod(x.shape))
        self.cpu(op, km.LayerType.REQUANTIZE, [x], y,
                 lambda a: km.RequantizeBody(0, a.main(x.name), a.main(y.name), count, table))

    def quantize(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        q = self.quant(op.outputs[0], op)
        if math.isclose(q.scale, x.quant.scale, rel_tol=1e-6) and q.zero_point == x.quant.zero_point:
            self.name_of[op.outputs[0]] = x.name
            return
        self.requantize(op, x, self.define(op.outputs[0], op), lambda r: r)

    def elementwise(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        alpha = float(op.options.get("Alpha", 0.0))
        function = FLOAT_FUNCTIONS[op.opcode]
        self.requantize(op, x, self.define(op.outputs[0], op), lambda r: function(r, alpha))

    def float_op(self, op: Operator, x: LTensor, out_index: int, out_shape: tuple[int, int, int],
                 layer_type: km.LayerType, body: Callable, macs: int = 0) -> None:
        """DEQUANTIZE -> float32 layer -> QUANTIZE with TFLite's output quantization."""
        xf = self.temp(x.shape, "f32")
        self.dequantize_step(op, x, xf)
        yf = self.temp(out_shape, "f32")
        self.cpu(op, layer_type, [xf], yf, lambda a: body(a.main(xf.name), a.main(yf.name)), macs=macs)
        y = self.define(out_index, op, out_shape)
        count = int(np.prod(out_shape))
        scale = np.float32(y.quant.scale)
        self.cpu(op, km.LayerType.QUANTIZE, [yf], y, lambda a: km.QuantizeBody(
            0, a.main(yf.name), a.main(y.name), count, float(scale), float(-y.quant.zero_point * scale)))

    def dequantize_step(self, op: Operator, x: LTensor, xf: LTensor) -> None:
        count = int(np.prod(x.shape))
        scale = np.float32(x.quant.scale)
        self.cpu(op, km.LayerType.DEQUANTIZE, [x], xf, lambda a: km.QuantizeBody(
            0, a.main(x.name), a.main(xf.name), count, float(scale), float(np.float32(-x.quant.zero_point * scale))))

    def max_pool(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        o = op.options
        if o.get("FusedActivationFunction", "NONE") != "NONE":
            raise self.fail(op, "pool with a fused activation", "a separate activation op after the pool")
        c, h, w = x.shape
        _, oh, ow = self.chw(op.outputs[0], op)
        kh, kw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
        ph = same_pads(h, kh, sh)[0] if o["Padding"] == "SAME" else 0
        pw = same_pads(w, kw, sw)[0] if o["Padding"] == "SAME" else 0
        y = self.define(op.outputs[0], op)
        if y.quant != x.quant:
            raise self.fail(op, "max pool changes the quantization", "identical input and output quantization")
        pool = kpu_pool_type(op, x.shape)
        if pool and any(isinstance(step, KpuStep) and step.output == x.name for step in self.prog.steps):
            # the map is in KPU RAM already (e.g. the passthrough branch point): pool it there with a copy layer
            self.one_hot(op, x, y, [(channel, 0, 0) for channel in range(c)], 1, pool)
            return
        self.cpu(op, km.LayerType.QUANTIZED_MAX_POOL2D, [x], y, lambda a: km.Pool2dBody(
            0, a.main(x.name), a.main(y.name), w, h, c, ow, oh, c, kw, kh, sw, sh, pw, ph),
            elements=c * oh * ow * kh * kw)

    def average_pool(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        o = op.options
        c, h, w = x.shape
        out_shape = self.chw(op.outputs[0], op)
        kh, kw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
        ph = same_pads(h, kh, sh)[0] if o["Padding"] == "SAME" else 0
        pw = same_pads(w, kw, sw)[0] if o["Padding"] == "SAME" else 0
        act = {"NONE": 0, "RELU": 1, "RELU6": 2}.get(o.get("FusedActivationFunction", "NONE"))
        if act:
            raise self.fail(op, "average pool with a fused activation (the SDK ignores it)", "a separate activation")
        self.float_op(op, x, op.outputs[0], out_shape, km.LayerType.AVERAGE_POOL2D, lambda i, j: km.FloatPool2dBody(
            0, i, j, w, h, c, out_shape[2], out_shape[1], c, kw, kh, sw, sh, pw, ph, act=0))

    def mean(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        axes = self.g.tensors[op.inputs[1]].data
        if axes is None or sorted(int(v) for v in np.asarray(axes).reshape(-1)) != [1, 2]:
            raise self.fail(op, f"MEAN over axes {axes}", "a mean over height and width (global average pooling)")
        c, h, w = x.shape
        self.float_op(op, x, op.outputs[0], (c, 1, 1), km.LayerType.GLOBAL_AVERAGE_POOL2D,
                      lambda i, j: km.GlobalPoolBody(0, i, j, h * w, c))

    def fully_connected(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        weights = self.g.tensors[op.inputs[1]]
        if weights.data is None or weights.dtype != "int8" or np.any(weights.zero_point != 0):
            raise self.fail(op, f"weights '{weights.name}' are not constant symmetric int8", "int8 weights")
        c, h, w = x.shape
        out_ch, in_ch = weights.shape
        if in_ch != c * h * w:
            raise self.fail(op, f"{in_ch} inputs for a {c}x{h}x{w} map", "a flattened input of matching size")
        w_q = weights.data.astype(np.float64)
        if h * w > 1:  # TFLite flattens HWC; the kmodel keeps maps as CHW
            w_q = w_q.reshape(out_ch, h, w, c).transpose(0, 3, 1, 2).reshape(out_ch, in_ch)
        scales = np.broadcast_to(weights.scale.astype(np.float64), (out_ch,))
        w_f = (w_q * scales[:, None]).astype(np.float32)
        bias_t = self.g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        bias = np.zeros(out_ch, np.float32) if bias_t is None or bias_t.data is None else \
            (bias_t.data.astype(np.float64) * scales * x.quant.scale).astype(np.float32)
        act = {"NONE": 0, "RELU": 1, "RELU6": 2}.get(op.options.get("FusedActivationFunction", "NONE"))
        if act is None:
            raise self.fail(op, "unsupported fused activation", "NONE, RELU or RELU6")
        self.float_op(op, x, op.outputs[0], (out_ch, 1, 1), km.LayerType.FULLY_CONNECTED,
                      lambda i, j: km.FullyConnectedBody(0, i, j, in_ch, out_ch, act, w_f, bias), macs=in_ch * out_ch)

    def softmax(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        if x.shape[1:] != (1, 1) or op.options.get("Beta", 1.0) != 1.0:
            raise self.fail(op, f"softmax over a {x.shape} map with beta {op.options.get('Beta')}",
                            "softmax with beta 1 over a vector (after a Dense layer)")
        self.float_op(op, x, op.outputs[0], x.shape, km.LayerType.SOFTMAX,
                      lambda i, j: km.ChannelsBody(0, i, j, x.shape[0]))

    def add(self, op: Operator) -> None:
        a, b = self.lt(op.inputs[0], op), self.lt(op.inputs[1], op)
        if a.shape != b.shape:
            raise self.fail(op, f"ADD of {a.shape} and {b.shape}", "two tensors of the same shape (no broadcast)")
        act = op.options.get("FusedActivationFunction", "NONE")
        out_q = self.quant(op.outputs[0], op)
        y = self.define(op.outputs[0], op, a.shape) if act == "NONE" else self.temp(a.shape, "u8", out_q)
        body = quantized_add_body(a.quant, b.quant, out_q, int(np.prod(a.shape)))
        self.cpu(op, km.LayerType.QUANTIZED_ADD, [a, b], y, lambda ad: dataclasses.replace(
            body, in_a_addr=ad.main(a.name), in_b_addr=ad.main(b.name), out_addr=ad.main(y.name)))
        if act != "NONE":
            function = {"RELU": FLOAT_FUNCTIONS["RELU"], "RELU6": FLOAT_FUNCTIONS["RELU6"]}.get(act)
            if function is None:
                raise self.fail(op, f"fused activation {act}", "NONE, RELU or RELU6")
            self.requantize(op, y, self.define(op.outputs[0], op, a.shape), lambda r: function(r, 0.0))

    def concat(self, op: Operator) -> None:
        parts = [self.lt(i, op) for i in op.inputs]
        rank = len(self.g.tensors[op.outputs[0]].shape)
        if op.options.get("Axis") not in (-1, rank - 1) or rank != 4:
            raise self.fail(op, f"concatenation along axis {op.options.get('Axis')}",
                            "concatenation along the channel axis of NHWC maps")
        if op.options.get("FusedActivationFunction", "NONE") != "NONE":
            raise self.fail(op, "concatenation with a fused activation", "no fused activation")
        y = self.define(op.outputs[0], op)
        if self.adjacent_concat(op, parts, y):
            return
        inputs = []
        for part in parts:
            if part.quant != y.quant:
                converted = self.temp(part.shape, "u8", y.quant)
                self.requantize(op, part, converted, lambda r: r)
                part = converted
            inputs.append(part)
        self.cpu(op, km.LayerType.QUANTIZED_CONCAT, inputs, y, lambda a: km.ConcatBody(
            0, a.main(y.name), len(inputs), [(a.main(t.name), t.size) for t in inputs]))

    def adjacent_concat(self, op: Operator, parts: list[LTensor], y: LTensor) -> bool:
        """Place KPU-produced parts in consecutive channel blocks of the output map (no copy) when possible."""
        groups = row_layout(y.shape[2])[0]
        producers = {step.output for step in self.prog.steps if isinstance(step, KpuStep)}
        producers |= {self.prog.tensors[name].kpu_parent[0] for name in producers
                      if self.prog.tensors[name].kpu_parent is not None}
        consumers_on_kpu = all(user.opcode in KPU_OPS for user in self.g.consumers(op.outputs[0]))
        usable = consumers_on_kpu and op.outputs[0] not in self.g.outputs and all(
            p.name in producers and p.quant == y.quant and p.kpu_parent is None and p.name != self.prog.input
            for p in parts) and all(p.shape[0] % groups == 0 for p in parts[:-1])
        usable = usable and len({p.name for p in parts}) == len(parts)
        if not usable:
            return False
        offset = 0
        for part in parts:
            part.kpu_parent = (y.name, offset)
            offset += part.shape[0]
        return True

    def reshape(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        shape = self.g.tensors[op.outputs[0]].shape
        c, h, w = x.shape
        flat_vector = tuple(shape) == (1, c * h * w)
        keeps_grid = len(shape) >= 3 and tuple(shape[:3]) == (1, h, w) and int(np.prod(shape[3:])) == c
        if not (flat_vector or keeps_grid):
            raise self.fail(op, f"reshape of a {c}x{h}x{w} map to {shape}",
                            "a flatten before FULLY_CONNECTED, or a split of the channel axis (YOLO heads)")
        if flat_vector and h * w > 1 and any(u.opcode != "FULLY_CONNECTED" for u in self.g.consumers(op.outputs[0])):
            raise self.fail(op, "a flattened spatial map feeds an op other than FULLY_CONNECTED",
                            "flatten only directly before a Dense layer (or use global average pooling)")
        self.name_of[op.outputs[0]] = x.name

    def dequantize(self, op: Operator) -> None:
        x = self.lt(op.inputs[0], op)
        xf = self.temp(x.shape, "f32")
        self.dequantize_step(op, x, xf)
        self.name_of[op.outputs[0]] = xf.name

    def model_output(self, index: int) -> None:
        op = self.g.producer(index) or Operator(-1, "OUTPUT", [], [index])
        t = self.lt(index, op)
        if t.dtype == "f32":
            self.prog.outputs.append(t.name)
            self.prog.output_quant.append(Quant(1.0, 0))
            return
        out = self.temp(t.shape, "f32")
        self.dequantize_step(Operator(op.index, "OUTPUT", [], [index]), t, out)
        self.prog.outputs.append(out.name)
        self.prog.output_quant.append(t.quant)


def lower_graph(graph: Graph, fuse_leaky: bool = False) -> Program:
    """The lowered program of a TFLite graph (raises PipelineError for anything the K210 cannot run); `fuse_leaky`
    folds each conv's following LEAKY_RELU into the conv's activation table instead of a separate KPU layer."""
    return Lowering(graph, fuse_leaky).run()

