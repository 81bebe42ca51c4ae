"""What the passes and the conv lowering both need to know about a TFLite conv: its input, kernel and padding."""

from __future__ import annotations

from deploy.k210.compiler.kpu_params import Quant
from deploy.k210.compiler.tflite_graph import Graph, Operator, Tensor

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_input(op: Operator) -> int:
    """The tensor a conv reads: its own input, or the input of the PAD folded into it."""
    return op.attrs.get("padded_input", op.inputs[0])


def kernel_hw(graph: Graph, op: Operator) -> tuple[int, ...]:
    """(kh, kw) of a CONV_2D (OHWI) or DEPTHWISE_CONV_2D (1HWC) weight tensor."""
    return tuple(graph.tensors[op.inputs[1]].shape[1:3])


def conv_pads(graph: Graph, op: Operator) -> set[tuple[int, int]] | None:
    """The (before, after) paddings of both axes; {(-1, -1)} for a folded PAD on a SAME conv; None when the input
    is not a batch-1 NHWC map."""
    shape = graph.tensors[conv_input(op)].shape
    if len(shape) != 4:
        return None
    o = op.options
    if "padded_input" in op.attrs:
        return {(1, 1)} if o.get("Padding") == "VALID" else {(-1, -1)}
    if o.get("Padding") == "SAME":
        k, stride = kernel_hw(graph, op)[1], o.get("StrideH", 1)
        return {same_pads(shape[1], k, stride), same_pads(shape[2], k, stride)}
    return {(0, 0)}


def tensor_quant(t: Tensor) -> Quant | None:
    """The uint8 KPU-side quantization of an int8/uint8 tensor with one scale, else None."""
    if t.dtype not in ("int8", "uint8") or t.scale.size != 1:
        return None
    return Quant(float(t.scale[0]), int(t.zero_point[0]) + (128 if t.dtype == "int8" else 0))
