"""Adjacent concat: a channel CONCATENATION of maps that KPU layers write is no copy at all when each part is placed
in consecutive channel blocks of the output map; this needs equal quantization, parts that fill whole line groups
(all but the last) and only KPU consumers of the result."""

from __future__ import annotations

from deploy.k210.compiler.program import KpuStep, LTensor, Program
from hardware.k210 import row_layout

KPU_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "SPACE_TO_DEPTH", "PAD"}


def match(prog: Program, parts: list[LTensor], output: LTensor, *, kpu_consumers_only: bool) -> bool:
    """Whether `parts` can be stored inside `output` (a concat that is a model output never can)."""
    groups = row_layout(output.shape[2])[0]
    producers = {step.output for step in prog.steps if isinstance(step, KpuStep)}
    producers |= {prog.tensors[name].kpu_parent[0] for name in producers if prog.tensors[name].kpu_parent is not None}
    return kpu_consumers_only and len({p.name for p in parts}) == len(parts) and all(
        p.name in producers and p.quant == output.quant and p.kpu_parent is None and p.name != prog.input
        for p in parts) and all(p.shape[0] % groups == 0 for p in parts[:-1])


def rewrite(parts: list[LTensor], output: LTensor) -> None:
    offset = 0
    for part in parts:
        part.kpu_parent = (output.name, offset)
        offset += part.shape[0]
