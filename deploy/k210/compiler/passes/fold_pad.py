"""Fold pad: a PAD of ((1, 1), (1, 1)) whose every consumer is a 3x3 VALID conv becomes those convs' own 'same'
padding (the KPU pads 3x3 windows itself). Any other PAD is left for the lowering, which refuses it."""

from __future__ import annotations

import numpy as np

from deploy.k210.compiler.conv_geometry import CONV_OPS, kernel_hw
from deploy.k210.compiler.tflite_graph import Graph, Operator

ONE_PIXEL_HW = (0, 0, 1, 1, 1, 1, 0, 0)


def match(graph: Graph, op: Operator) -> list[Operator] | None:
    """The convs that absorb this PAD, or None."""
    if op.opcode != "PAD" or op.outputs[0] in graph.outputs:
        return None
    paddings = graph.tensors[op.inputs[1]].data
    if paddings is None or not np.array_equal(np.asarray(paddings).reshape(-1), ONE_PIXEL_HW):
        return None
    users = graph.consumers(op.outputs[0])
    if not users or not all(user.opcode in CONV_OPS and user.options.get("Padding") == "VALID"
                            and kernel_hw(graph, user) == (3, 3) for user in users):
        return None
    return users


def rewrite(op: Operator, users: list[Operator]) -> None:
    op.attrs["folded"] = True
    for user in users:
        user.attrs["padded_input"] = op.inputs[0]


def run(graph: Graph) -> None:
    for op in graph.operators:
        users = match(graph, op)
        if users:
            rewrite(op, users)
