"""Defer stride-2 decimation: the KPU never pools a depthwise layer (§1.4), so a stride-2 depthwise conv runs at full
resolution and its only consumer, a stride-1 1x1 CONV_2D (which commutes with the subsampling), applies
left_top_2_s2 instead, as nncase's K210SeparableConv2dTransform does. Without such a consumer the lowering adds a
one-hot decimation layer. An odd-sized input is never deferred: a stride-2 pool would floor it (7 -> 3) where the
centred windows ceil it (7 -> 4), so the lowering decimates it on the CPU (decimate_cpu)."""

from __future__ import annotations

from deploy.k210.compiler.conv_geometry import conv_input, conv_pads, kernel_hw
from deploy.k210.compiler.passes.fuse_activation import activation_output
from deploy.k210.compiler.tflite_graph import Graph, Operator

SHIFTED = {(0, 1)}  # TF 'SAME' on an even size: windows centred on odd pixels, decimated by right_top_2_s2


def match(graph: Graph, op: Operator) -> Operator | None:
    """The 1x1 conv that takes over this depthwise conv's decimation, or None."""
    if op.opcode != "DEPTHWISE_CONV_2D" or op.options.get("StrideH", 1) != 2:
        return None
    pads = conv_pads(graph, op)
    odd = any(side % 2 for side in graph.tensors[conv_input(op)].shape[1:3])
    if pads is None or len(pads) != 1 or pads == SHIFTED or odd:
        return None
    user = graph.sole_consumer(activation_output(op))
    if user is None or user.opcode != "CONV_2D" or kernel_hw(graph, user) != (1, 1):
        return None
    return user if (user.options.get("StrideH"), user.options.get("StrideW")) == (1, 1) else None


def rewrite(op: Operator, user: Operator) -> None:
    op.attrs["defer_decimation"] = True
    user.attrs["decimate_input"] = True


def run(graph: Graph) -> None:
    for op in graph.operators:
        user = match(graph, op)
        if user is not None:
            rewrite(op, user)
