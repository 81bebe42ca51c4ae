"""Fuse activation: a RELU / RELU6 that is a conv's only consumer becomes the conv's activation (the clamp of its
table); a LEAKY_RELU after that rides on the conv too (folded into its table with `fuse_leaky`, else its own exact
depthwise 1x1 KPU layer, decided by the lowering)."""

from __future__ import annotations

from deploy.k210.compiler.conv_geometry import CONV_OPS
from deploy.k210.compiler.tflite_graph import Graph, Operator

CLAMPS = ("RELU", "RELU6")


def match(graph: Graph, op: Operator) -> tuple[Operator | None, Operator | None] | None:
    """(clamp op, LeakyReLU op) following the conv, either may be None; None when neither follows."""
    if op.opcode not in CONV_OPS:
        return None
    kind = op.options.get("FusedActivationFunction", "NONE")
    nxt = graph.sole_consumer(op.outputs[0])
    clamp = None
    if kind == "NONE" and nxt is not None and nxt.opcode in CLAMPS:
        clamp, kind = nxt, nxt.opcode
        nxt = graph.sole_consumer(nxt.outputs[0])
    leaky = nxt if kind == "NONE" and nxt is not None and nxt.opcode == "LEAKY_RELU" else None
    return (clamp, leaky) if clamp or leaky else None


def rewrite(op: Operator, clamp: Operator | None, leaky: Operator | None) -> None:
    for name, fused in (("clamp", clamp), ("leaky", leaky)):
        if fused is not None:
            fused.attrs["fused_into"] = op.index
            op.attrs[name] = fused


def run(graph: Graph) -> None:
    for op in graph.operators:
        found = match(graph, op)
        if found:
            rewrite(op, *found)


def activated_output(op: Operator) -> int:
    """The tensor the conv's own table writes when no LeakyReLU layer follows: past a fused clamp."""
    return op.attrs["clamp"].outputs[0] if "clamp" in op.attrs else op.outputs[0]


def activation_output(op: Operator) -> int:
    """The last tensor of the conv's activation chain (the LeakyReLU's output when one rides on it)."""
    return op.attrs["leaky"].outputs[0] if "leaky" in op.attrs else activated_output(op)
