"""Graph rewrites run before lowering, one per module, each a match then a rewrite that records its decision in the
operators' `attrs` (fused ops stay in the graph, marked `fused_into`, so producers and consumers keep their meaning).

Order matters: a pool is fused past the activation, and only on a conv that does not apply a deferred decimation.
`split_weight_loads` and `adjacent_concat` rewrite the lowered program instead and are called from the lowering.
"""

from __future__ import annotations

import dataclasses

from deploy.k210.compiler.passes import defer_decimation, fold_pad, fuse_activation, fuse_pool
from deploy.k210.compiler.tflite_graph import Graph


def rewrite_graph(graph: Graph, *, fuse_leaky: bool = False) -> Graph:
    """A copy of `graph` with every graph rewrite applied (the input graph is left untouched)."""
    graph = dataclasses.replace(graph, operators=[dataclasses.replace(op, attrs={}) for op in graph.operators])
    fold_pad.run(graph)
    fuse_activation.run(graph)
    defer_decimation.run(graph)
    fuse_pool.run(graph, fuse_leaky=fuse_leaky)
    return graph
