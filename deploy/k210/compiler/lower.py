"""Lower a full-integer TFLite graph to KPU and CPU steps (spec §5.6, §6.4, §7.4): the graph rewrites of `passes`
first, then one lowering function per TFLite op (`LOWERINGS`; KPU ops in lower_kpu, CPU ops in lower_cpu), in order.

Rules (each violation raises one PipelineError naming the TFLite op and tensor, the KPU rule, and the fix):
- CONV_2D / DEPTHWISE_CONV_2D: 1x1 or 3x3, dilation 1, stride 1 or 2. 3x3 stride 1 needs 'same' padding.
  Stride 2 with padding (1, 1) (explicit PAD + VALID, passes/fold_pad) is a 'same' conv with left_top_2_s2
  decimation; TF 'SAME' on even sizes pads (0, 1), whose windows centre on odd pixels: the conv runs at full
  resolution and a one-hot KPU layer (tap one row down, right_top_2_s2) picks the odd rows and columns. Depthwise
  layers never pool (the chip rule of §1.4): a stride-2 depthwise conv runs at full resolution and its decimation
  moves into the following 1x1 conv (passes/defer_decimation), or into a one-hot copy layer when none follows.
- A fused or following RELU / RELU6 becomes the clamp of the conv's table (passes/fuse_activation). A following
  LEAKY_RELU becomes its own depthwise 1x1 KPU layer whose table reproduces LiteRT's rounding exactly (conv rounds to
  its tensor, then LeakyReLU requantizes), or with `fuse_leaky` is folded into the conv's table as nncase does (one
  KPU layer, ~2 % less time by the calibrated cycle model). One rounding cannot follow LiteRT's two: per layer about a
  quarter of the values land 1 LSB off, and over a trained 10-25 layer detector that drifts to 88-94 % of output bytes
  within 1 LSB (cosine 0.9992-0.9996) instead of >= 99.9 %, hence off by default. A following 2x2 s2, 2x2 s1 'same' or
  4x4 s4 MAX/AVERAGE_POOL_2D goes into the write-back pool (passes/fuse_pool; with a separate LeakyReLU layer only max
  pools, which commute with it); a KPU-resident map with several consumers is pooled by a one-hot copy layer.
- SPACE_TO_DEPTH (the DarkNet19 passthrough) is one KPU 3x3 conv with one-hot weights (out channel
  (dy*2+dx)*C+c reads input channel c at tap (1+dy, 1+dx)) plus left_top_2_s2. Chosen over a CPU layer because
  kmodel V3 has no space-to-depth CPU layer (it would need a per-byte CONCAT gather plus DMA out and upload);
  the KPU version is exact, stays in KPU RAM and costs 36*C^2 weight bytes.
- A conv whose weights need more than 64 loads of 30 KiB is split into several KPU layers over slices of its
  output channels, written into consecutive channel blocks of one map (passes/split_weight_loads).
- CONCATENATION along channels writes its KPU-produced inputs into adjacent line ranges of one map when the
  quantization agrees and each channel count fills whole line groups (passes/adjacent_concat); otherwise a CPU
  CONCAT (with REQUANTIZE of inputs whose quantization differs).
- A stride-2 conv on an odd size runs at full resolution and is decimated on the CPU (decimate_cpu): KPU pools
  floor 7 to 3 where TFLite's centred windows give 4 (MobileFaceNet's 7x7 -> 4x4 at 112x112).
- FULLY_CONNECTED with at most 1024 inputs and outputs runs on the KPU in nncase's 4x4-padded form
  (K210_ADD_PADDING, a 1x1 conv, K210_REMOVE_PADDING): uint8 weights, 4x smaller than float32, and exact integer
  arithmetic like TFLite's; a 512 -> 128 embedding FC is estimated at 197 us against 660 us on the CPU.
- ADD is QUANTIZED_ADD on the CPU; MEAN over H, W (global average pool), AVERAGE_POOL_2D that cannot fuse,
  a FULLY_CONNECTED too large for the KPU (or with kpu_fc off) and SOFTMAX run in float32 between DEQUANTIZE and
  QUANTIZE with TFLite's tensor quantization (the SDK runs these in float);
  MAX_POOL_2D that cannot run on the KPU is QUANTIZED_MAX_POOL2D; other elementwise activations are REQUANTIZE
  tables. Every model output gets a DEQUANTIZE so the kmodel returns float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deploy.k210.compiler import lower_cpu, lower_kpu
from deploy.k210.compiler.conv_geometry import tensor_quant
from deploy.k210.compiler.kpu_params import Quant
from deploy.k210.compiler.passes import rewrite_graph, split_weight_loads
from deploy.k210.compiler.program import CpuStep, KpuStep, LTensor, Program
from deploy.k210.compiler.tflite_graph import Graph, Operator
from deploy.k210.compiler.wide_weights import WideWeights, layer_codes
from deploy.k210.format import kmodel as km
from hardware.k210 import KPU_MAX_CHANNELS, KPU_MAX_HEIGHT, KPU_MAX_WIDTH, KPU_MIN_SIZE, weight_load_bytes
from pipeline.errors import PipelineError

LOWERINGS: dict[str, Callable[[Lowering, Operator], None]] = {
    "QUANTIZE": lower_cpu.quantize, "CONV_2D": lower_kpu.conv, "DEPTHWISE_CONV_2D": lower_kpu.conv,
    "PAD": lower_kpu.pad, "MAX_POOL_2D": lower_cpu.max_pool, "AVERAGE_POOL_2D": lower_cpu.average_pool,
    "SPACE_TO_DEPTH": lower_kpu.space_to_depth, "CONCATENATION": lower_cpu.concat, "ADD": lower_cpu.add,
    "MEAN": lower_cpu.mean, "FULLY_CONNECTED": lower_cpu.fully_connected, "SOFTMAX": lower_cpu.softmax,
    "RESHAPE": lower_cpu.reshape, "DEQUANTIZE": lower_cpu.dequantize,
    **dict.fromkeys(lower_cpu.FLOAT_FUNCTIONS, lower_cpu.elementwise),
}


class Lowering:
    """The program being built from a rewritten graph, and the tensor bookkeeping every op lowering shares."""

    def __init__(self, graph: Graph, fuse_leaky: bool = False, kpu_fc: bool = True,
                 wide: WideWeights | None = None) -> None:
        self.g = graph
        self.fuse_leaky = fuse_leaky
        self.kpu_fc = kpu_fc
        self.wide = wide
        self.prog = Program(tensors={})
        self.name_of: dict[int, str] = {}
        self.temp_count = 0

    # ---- errors and tensors -------------------------------------------------------------------------------
    def fail(self, op: Operator, rule: str, change: str) -> PipelineError:
        out = self.g.tensors[op.outputs[0]].name if op.outputs else "?"
        return PipelineError(f"TFLite op #{op.index} {op.opcode} (output tensor '{out}'): {rule}", path=self.g.path,
                             field=f"operators[{op.index}]", expected=change)

    def quant(self, index: int, op: Operator) -> Quant:
        t = self.g.tensors[index]
        q = tensor_quant(t)
        if q is None:
            raise self.fail(op, f"tensor '{t.name}' is {t.dtype} with {t.scale.size} scales; the KPU path needs "
                                "uint8/int8 activations with one scale", "a full-integer model (int8 inside, "
                                                                          "uint8 input/output)")
        return q

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
                            "a model made of the supported ops (see deploy/k210/compiler/lower.py)")
        return self.prog.tensors[self.name_of[index]]

    def define(self, index: int, op: Operator, shape: tuple[int, int, int] | None = None) -> LTensor:
        tensor = LTensor(name=f"t{index}", shape=shape or self.chw(index, op), dtype="u8", quant=self.quant(index, op))
        self.prog.tensors[tensor.name] = tensor
        self.name_of[index] = tensor.name
        return tensor

    def alias(self, index: int, tensor: LTensor) -> None:
        """TFLite tensor `index` holds the same bytes as `tensor` (identity requantize, reshape, dequantize)."""
        self.name_of[index] = tensor.name

    def temp(self, shape: tuple[int, int, int], dtype: str, quant: Quant | None = None) -> LTensor:
        self.temp_count += 1
        tensor = LTensor(name=f"tmp{self.temp_count}", shape=shape, dtype=dtype, quant=quant)
        self.prog.tensors[tensor.name] = tensor
        return tensor

    # ---- weights ------------------------------------------------------------------------------------------
    def weight_bits(self, op: Operator) -> int:
        """The weight width (8 or 16) of the KPU layers lowered from `op`."""
        return self.wide.bits(op.index) if self.wide else 8

    def layer_weights(self, op: Operator, codes: np.ndarray, scales: np.ndarray, bias: np.ndarray, input_q: Quant,
                      layout: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(signed codes, per-channel scales, bias in accumulator units, bits) of weighted op `op`'s KPU layer."""
        return layer_codes(self.wide, op, codes, scales, bias, input_q, layout)

    # ---- steps --------------------------------------------------------------------------------------------
    def kpu_step(self, op: Operator, **fields) -> None:
        """Append a KPU layer, split over output-channel slices when its weights need too many loads."""
        step = KpuStep(source=f"#{op.index} {op.opcode}", **fields)
        for label, (c, h, w) in (("input", step.in_shape), ("output", step.out_shape)):
            if not (KPU_MIN_SIZE <= h <= KPU_MAX_HEIGHT and KPU_MIN_SIZE <= w <= KPU_MAX_WIDTH
                    and 1 <= c <= KPU_MAX_CHANNELS):
                raise self.fail(op, f"KPU {label} map {c}x{h}x{w} (CxHxW) is outside the KPU limits",
                                f"{KPU_MIN_SIZE} <= H <= {KPU_MAX_HEIGHT}, {KPU_MIN_SIZE} <= W <= {KPU_MAX_WIDTH}, "
                                f"C <= {KPU_MAX_CHANNELS}: change the input size or channel count")
        chunk = split_weight_loads.channels_per_layer(step)
        if chunk == 0:
            per_channel = step.kernel ** 2 * step.in_shape[0] * step.weight_bits // 8
            raise self.fail(op, f"one output channel needs {per_channel} weight bytes, more than a "
                                f"{weight_load_bytes(step.weight_bits)}-byte weight load",
                            "fewer input channels for this layer")
        self.prog.steps += split_weight_loads.split(step, chunk, self.prog.tensors[step.output],
                                                    lambda shape, quant: self.temp(shape, "u8", quant))

    def cpu(self, op: Operator, layer_type: km.LayerType, inputs: list[LTensor], output: LTensor,
            build: Callable, elements: int = 0, macs: int = 0) -> None:
        self.prog.steps.append(CpuStep(source=f"#{op.index} {op.opcode}", layer_type=layer_type,
                                       inputs=[t.name for t in inputs], output=output.name, build=build,
                                       elements=elements or int(np.prod(output.shape)), macs=macs))

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
        for op in self.g.operators:
            if "fused_into" in op.attrs or self.computes_shape_only(op):
                continue
            if op.opcode not in LOWERINGS:
                raise self.fail(op, "this op has no K210 lowering",
                                "a model using only " + ", ".join(sorted(LOWERINGS)))
            try:
                LOWERINGS[op.opcode](self, op)
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

    def model_output(self, index: int) -> None:
        op = self.g.producer(index) or Operator(-1, "OUTPUT", [], [index])
        t = self.lt(index, op)
        if t.dtype == "f32":
            self.prog.outputs.append(t.name)
            self.prog.output_quant.append(Quant(1.0, 0))
            return
        out = self.temp(t.shape, "f32")
        lower_cpu.dequantize_step(self, Operator(op.index, "OUTPUT", [], [index]), t, out)
        self.prog.outputs.append(out.name)
        self.prog.output_quant.append(t.quant)


def lower_graph(graph: Graph, fuse_leaky: bool = False, kpu_fc: bool = True,
                wide: WideWeights | None = None) -> Program:
    """The lowered program of a TFLite graph (raises PipelineError for anything the K210 cannot run); `fuse_leaky`
    folds each conv's following LEAKY_RELU into the conv's activation table instead of a separate KPU layer;
    `kpu_fc` runs small quantized FULLY_CONNECTED layers on the KPU (4x4-padded form) instead of in float; `wide`
    gives KPU layers 16-bit weights from the quantized model's float twin (compiler/wide_weights)."""
    return Lowering(rewrite_graph(graph, fuse_leaky=fuse_leaky), fuse_leaky, kpu_fc, wide).run()
