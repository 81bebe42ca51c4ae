"""16-bit KPU weights (compile.weight_bits: 16) from the float weights of exactly the model the uint8 TFLite was
quantized from: the export stage's model_quantized_float.tflite (BN folded, equalised, QAT-trained as configured).

The uint8 TFLite holds only int8 per-channel codes; its activation ranges (calibrated or learned in QAT) stay what
the kmodel uses. The float twin of each weighted op is matched by order and checked: the same op kinds, the same
weight shapes, and the float weights quantized with the uint8 model's own per-channel scales give its int8 codes
(within one code of float rounding). A float model from another training step (model_float.tflite before CLE or QAT)
is refused by field.

Codes (kpu_params' convention one width up): symmetric per output channel, |q| <= 32767, stored as q + 32768. When
a layer's worst-case accumulator sum |x - z_x| * sum |q| would leave the range the compiler keeps (2^34, as for
the BN output), the code range of that layer shrinks until it fits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from deploy.k210.compiler.kpu_params import T_LIMIT_BITS, Quant
from deploy.k210.compiler.tflite_graph import Graph, Operator
from pipeline.errors import PipelineError

QUANTIZED_FLOAT_NAME = "model_quantized_float.tflite"  # written by the export stage beside model_uint8.tflite
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
WIDE_BITS = 16
WIDE_LIMIT = (1 << (WIDE_BITS - 1)) - 1  # symmetric codes -32767..32767
CODE_TOLERANCE = 1  # int8 codes the float weights may land off the uint8 model's (converter float rounding)
SOURCE_EXPECTED = ("the float TFLite of exactly the model the uint8 TFLite was quantized from (the export stage's "
                   "model_quantized_float.tflite; run `invoke export --force` to write it)")


@dataclass(frozen=True)
class FloatTwin:
    """A weighted op's float kernel (the uint8 op's TFLite weight layout) and bias (None when it has none)."""

    kernel: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class WideWeights:
    """The float twins of the uint8 model's weighted ops (by uint8 op index) and which KPU layers store 16-bit
    weights: all of them (`ops` None, the kmodel's global 16-bit mode), or only the layers of `ops` (a per-layer mix
    that only the simulator runs: kpu.c sets one width per model)."""

    twins: dict[int, FloatTwin]
    ops: frozenset[int] | None = None

    def bits(self, op_index: int) -> int:
        """The weight width of the KPU layers lowered from TFLite op `op_index`."""
        return WIDE_BITS if self.ops is None or op_index in self.ops else 8

    def only(self, ops: Collection[int]) -> WideWeights:
        """16-bit weights for the layers of these uint8 ops only, 8-bit elsewhere."""
        return dataclasses.replace(self, ops=frozenset(ops))


def _channel_scales(tensor_scale: np.ndarray, quantized_dim: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[quantized_dim] = -1
    return tensor_scale.astype(np.float64).reshape(shape)


def _check_twin(quant: Graph, floating: Graph, op: Operator, twin: Operator) -> FloatTwin:
    mine, theirs = quant.tensors[op.inputs[1]], floating.tensors[twin.inputs[1]]
    where = f"operators[{twin.index}]"
    if theirs.data is None or theirs.dtype != "float32" or theirs.shape != mine.shape:
        raise PipelineError(f"{twin.opcode} #{twin.index} weights '{theirs.name}' are {theirs.dtype} {theirs.shape}, "
                            f"the uint8 model's {op.opcode} #{op.index} has {mine.shape}", path=floating.path,
                            field=where, expected=SOURCE_EXPECTED)
    codes = np.round(theirs.data / _channel_scales(mine.scale, mine.quantized_dim, len(mine.shape)))
    off = float(np.max(np.abs(codes - mine.data.astype(np.float64)))) if codes.size else 0.0
    if off > CODE_TOLERANCE:
        raise PipelineError(f"{twin.opcode} #{twin.index}: its float weights quantize to int8 codes up to {off:.0f} "
                            f"away from those of the uint8 model's {op.opcode} #{op.index} (another model)",
                            path=floating.path, field=where, expected=SOURCE_EXPECTED)
    bias = None
    if len(twin.inputs) > 2 and twin.inputs[2] >= 0 and floating.tensors[twin.inputs[2]].data is not None:
        bias = floating.tensors[twin.inputs[2]].data.astype(np.float64).reshape(-1)
    return FloatTwin(kernel=theirs.data.astype(np.float64), bias=bias)


def read_twins(quant: Graph, floating: Graph) -> WideWeights:
    """Pair each weighted op of the uint8 graph with the float graph's, in order, checked (see the module doc)."""
    mine = [op for op in quant.operators if op.opcode in WEIGHTED_OPS]
    theirs = [op for op in floating.operators if op.opcode in WEIGHTED_OPS]
    if [op.opcode for op in mine] != [op.opcode for op in theirs]:
        raise PipelineError(f"the float model's weighted ops ({len(theirs)}: "
                            f"{' '.join(op.opcode for op in theirs)}) are not the uint8 model's ({len(mine)}: "
                            f"{' '.join(op.opcode for op in mine)})", path=floating.path, field="operators",
                            expected=SOURCE_EXPECTED)
    return WideWeights({op.index: _check_twin(quant, floating, op, twin)
                        for op, twin in zip(mine, theirs, strict=True)})


def wide_codes(kernel: np.ndarray, bias: np.ndarray, input_q: Quant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int32 codes, per-channel scales, bias in accumulator units) of float weights grouped per output channel
    (axis 0) and their real bias, for an input quantized as `input_q`."""
    flat = np.abs(kernel.reshape(len(kernel), -1))
    peak = flat.max(axis=1) if flat.size else np.zeros(len(kernel))
    fill = np.divide(flat.sum(axis=1), peak, out=np.zeros_like(peak), where=peak > 0)  # sum |q| / max |q|
    span = max(input_q.zero_point, 255 - input_q.zero_point, 1)
    worst = span * float(fill.max(initial=0.0))
    limit = WIDE_LIMIT if worst == 0 else min(WIDE_LIMIT, math.floor((2 ** T_LIMIT_BITS - 1) / worst))
    scales = np.where(peak > 0, peak / limit, 1.0)
    codes = np.round(kernel / scales.reshape((-1,) + (1,) * (kernel.ndim - 1))).astype(np.int32)
    return codes, scales, bias / (input_q.scale * scales)


def layer_codes(wide: WideWeights | None, op: Operator, codes: np.ndarray, scales: np.ndarray, bias: np.ndarray,
                input_q: Quant, layout: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray, int]:
    """(codes, scales, bias in accumulator units, weight bits) a KPU layer of weighted op `op` stores: the uint8
    model's int8 `codes` / `scales` / int32 `bias`, or with 16-bit weights for this op its float twin's, requantized
    (`layout` turns a TFLite kernel into the codes' output-channel-first layout)."""
    if wide is None or wide.bits(op.index) == 8:
        return codes, scales, bias.astype(np.float64), 8
    twin = wide.twins[op.index]
    real_bias = twin.bias if twin.bias is not None else bias * scales * input_q.scale
    return (*wide_codes(layout(twin.kernel), real_bias, input_q), WIDE_BITS)
