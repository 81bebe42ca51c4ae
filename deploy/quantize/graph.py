"""Which tensors of a converted int8 TFLite get a range of their own: the float twin of each activation, the tie
groups that must share one quantization, and the tensors whose quantization is fixed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.k210.compiler.tflite_graph import Graph, Operator
from pipeline.errors import PipelineError

BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")  # added around the float graph by the converter (uint8 I/O)
# int8 kernels that require one quantization on every activation input and output (TFLite's int8 spec; our
# compiler's pool fusion, adjacent concat and space-to-depth rely on it too)
TIED_OPS = frozenset({"MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "RESHAPE", "PAD", "PADV2", "SPACE_TO_DEPTH",
                      "DEPTH_TO_SPACE", "SQUEEZE", "TRANSPOSE", "STRIDED_SLICE", "SLICE", "GATHER",
                      "RESIZE_NEAREST_NEIGHBOR", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "MAXIMUM", "MINIMUM"})
# int8 kernels whose output quantization is set by the op itself (LiteRT refuses any other)
FIXED_OUTPUT_OPS = frozenset({"LOGISTIC", "SOFTMAX", "LOG_SOFTMAX", "TANH", "L2_NORMALIZATION"})
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
RAW_INPUT_SCALE = float(np.float32(1 / 255))  # the uint8 model input is raw RGB bytes: real = byte / 255


@dataclass
class QuantPlan:
    """twins: int8 activation tensor -> its float TFLite tensor; groups: int8 activation tensors that share one
    range (singletons included); fixed: tensors whose (scale, zero point) is set by the model's contract (the raw
    RGB input, 1/255) or by their op (LOGISTIC, SOFTMAX, ...: as converted); outputs: each uint8 model output ->
    the int8 tensor it requantizes (same scale, zero point + 128); op_twins: quantized op index -> float op (for
    the float biases)."""

    twins: dict[int, int]
    groups: list[list[int]]
    fixed: dict[int, tuple[float, int]]
    outputs: dict[int, int]
    op_twins: dict[int, Operator]


def activations(graph: Graph) -> list[int]:
    """int8 tensors computed at run time (not constants)."""
    return [t.index for t in graph.tensors if t.dtype == "int8" and t.data is None and t.is_quantized]


def _align(quant: Graph, floating: Graph) -> dict[int, Operator]:
    inner = [op for op in quant.operators if op.opcode not in BOUNDARY_OPS]
    if [op.opcode for op in inner] != [op.opcode for op in floating.operators]:
        raise PipelineError("the float and uint8 TFLite models hold different operators "
                            f"({len(floating.operators)} vs {len(inner)} besides QUANTIZE/DEQUANTIZE)",
                            path=quant.path, field="operators",
                            expected="both converted from the same Keras model (run `invoke export --force`)")
    return {op.index: twin for op, twin in zip(inner, floating.operators, strict=True)}


def _union(groups: dict[int, int], a: int, b: int) -> None:
    def root(x: int) -> int:
        while groups[x] != x:
            groups[x] = groups[groups[x]]
            x = groups[x]
        return x

    groups[root(a)] = root(b)


def plan(quant: Graph, floating: Graph) -> QuantPlan:
    """Pair the converted model's int8 activations with the float model's tensors and group the tied ones."""
    op_twins = _align(quant, floating)
    acts = set(activations(quant))
    twins: dict[int, int] = {}
    fixed: dict[int, tuple[float, int]] = {}
    outputs: dict[int, int] = {}
    parent = {t: t for t in acts}
    for op in quant.operators:
        if op.opcode == "QUANTIZE":
            source, target = quant.tensors[op.inputs[0]], quant.tensors[op.outputs[0]]
            if source.index in quant.inputs and target.index in acts:
                fixed[source.index] = (RAW_INPUT_SCALE, 0)
                fixed[target.index] = (RAW_INPUT_SCALE, -128)
            elif target.dtype == "uint8" and source.index in acts:
                outputs[target.index] = source.index
            continue
        twin = op_twins.get(op.index)
        if twin is not None:
            pairs = [*zip(op.inputs, twin.inputs, strict=True), *zip(op.outputs, twin.outputs, strict=True)]
            for mine, theirs in pairs:
                if mine in acts and theirs >= 0:
                    twins.setdefault(mine, theirs)
        if op.opcode in FIXED_OUTPUT_OPS:
            fixed.update({t: (float(quant.tensors[t].scale[0]), int(quant.tensors[t].zero_point[0]))
                          for t in op.outputs if t in acts})
        if op.opcode in TIED_OPS:
            members = [t for t in op.inputs + op.outputs if t in acts]
            for other in members[1:]:
                _union(parent, members[0], other)
    groups: dict[int, list[int]] = {}
    for t in sorted(acts):
        root = t
        while parent[root] != root:
            root = parent[root]
        groups.setdefault(root, []).append(t)
    return QuantPlan(twins=twins, groups=list(groups.values()), fixed=fixed, outputs=outputs, op_twins=op_twins)
