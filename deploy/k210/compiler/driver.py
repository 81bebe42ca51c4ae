"""TFLite -> kmodel V3: read, lower, plan memory, emit, serialise. Nothing is written here (see compile_stage)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.k210.compiler.emit import emit_kmodel
from deploy.k210.compiler.lower import lower_graph
from deploy.k210.compiler.memory_plan import MemoryPlan, plan_memory
from deploy.k210.compiler.program import Program
from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.k210.format.kmodel import KModel
from deploy.k210.format.kmodel_io import write_kmodel


@dataclass
class Compiled:
    model: KModel
    data: bytes
    program: Program
    plan: MemoryPlan


def compile_tflite(source: bytes | str | Path, *, fuse_leaky: bool = False, kpu_fc: bool = True) -> Compiled:
    """Compile a full-integer uint8-I/O TFLite model; raises PipelineError for anything the K210 cannot run.
    `fuse_leaky` folds LeakyReLU into the preceding conv's activation table: one KPU layer instead of two, but
    off LiteRT's double rounding by 1 LSB on part of the values, which deep models accumulate (see lower.py).
    `kpu_fc` runs a FULLY_CONNECTED of at most 1024 inputs and outputs on the KPU (4x4-padded 1x1 conv, uint8
    weights) instead of as a float32 CPU layer."""
    program = lower_graph(read_tflite(source), fuse_leaky=fuse_leaky, kpu_fc=kpu_fc)
    plan = plan_memory(program)
    model = emit_kmodel(program, plan)
    return Compiled(model=model, data=write_kmodel(model), program=program, plan=plan)
