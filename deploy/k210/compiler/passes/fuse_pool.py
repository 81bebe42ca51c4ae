"""Fuse pool: a 2x2 s2, 2x2 s1 'same' or 4x4 s4 MAX/AVERAGE_POOL_2D that is the only consumer of a stride-1 conv's
activation runs in the conv's KPU write-back pool. Past a separate LeakyReLU layer only max pools move onto the conv
(they commute with the monotonic LeakyReLU)."""

from __future__ import annotations

from deploy.k210.compiler.conv_geometry import conv_input, tensor_quant
from deploy.k210.compiler.passes.fuse_activation import activation_output
from deploy.k210.compiler.tflite_graph import Graph, Operator
from hardware.k210 import PoolType

POOLS = ("MAX_POOL_2D", "AVERAGE_POOL_2D")


def kpu_pool_type(op: Operator, shape: tuple[int, int, int]) -> PoolType:
    """The KPU write-back pool equal to this MAX/AVERAGE_POOL_2D on a (C, H, W) map, or BYPASS if there is none."""
    o = op.options
    is_max = op.opcode == "MAX_POOL_2D"
    _, h, w = shape
    k, s = o.get("FilterWidth"), o.get("StrideW")
    if o.get("FusedActivationFunction", "NONE") != "NONE" or (k, s) != (o.get("FilterHeight"), o.get("StrideH")):
        return PoolType.BYPASS
    if k == 2 and s == 2 and (o.get("Padding") == "VALID" or (h % 2 == 0 and w % 2 == 0)):
        return PoolType.MAX_2_S2 if is_max else PoolType.MEAN_2_S2
    if k == 4 and s == 4 and (o.get("Padding") == "VALID" or (h % 4 == 0 and w % 4 == 0)):
        return PoolType.MAX_4_S4 if is_max else PoolType.MEAN_4_S4
    if k == 2 and s == 1 and o.get("Padding") == "SAME":
        return PoolType.MAX_2_S1 if is_max else PoolType.MEAN_2_S1
    return PoolType.BYPASS


def match(graph: Graph, op: Operator, *, fuse_leaky: bool) -> tuple[PoolType, Operator] | None:
    """(pool type, pool op) the conv's write-back takes over, or None."""
    if op.opcode != "CONV_2D" or op.options.get("StrideH", 1) != 1 or "decimate_input" in op.attrs:
        return None
    final = activation_output(op)
    nxt = graph.sole_consumer(final)
    max_only = "leaky" in op.attrs and not fuse_leaky
    if nxt is None or nxt.opcode not in (POOLS[:1] if max_only else POOLS):
        return None
    pooled_q, conv_q = tensor_quant(graph.tensors[nxt.outputs[0]]), tensor_quant(graph.tensors[final])
    shape = graph.tensors[conv_input(op)].shape
    if pooled_q is None or pooled_q != conv_q or len(shape) != 4:
        return None
    pool = kpu_pool_type(nxt, (graph.tensors[op.inputs[1]].shape[0], shape[1], shape[2]))
    return (pool, nxt) if pool != PoolType.BYPASS else None


def rewrite(op: Operator, pool: PoolType, pool_op: Operator) -> None:
    pool_op.attrs["fused_into"] = op.index
    op.attrs["pool"] = pool
    op.attrs["pool_op"] = pool_op


def run(graph: Graph, *, fuse_leaky: bool) -> None:
    for op in graph.operators:
        found = match(graph, op, fuse_leaky=fuse_leaky)
        if found:
            rewrite(op, *found)
