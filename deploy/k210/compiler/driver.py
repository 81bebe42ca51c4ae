"""TFLite -> kmodel V3: read, lower, plan memory, emit, serialise. Nothing is written here (see compile_stage)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.k210.compiler.emit import emit_kmodel
from deploy.k210.compiler.lower import lower_graph
from deploy.k210.compiler.memory_plan import MemoryPlan, plan_memory
from deploy.k210.compiler.program import Program
from deploy.k210.compiler.tflite_graph import read_tflite
from deploy.k210.compiler.wide_weights import WideWeights, read_twins
from deploy.k210.format.kmodel import KModel
from deploy.k210.format.kmodel_io import write_kmodel
from hardware.k210 import KPU_WEIGHT_BITS
from pipeline.errors import PipelineError


@dataclass
class Compiled:
    model: KModel
    data: bytes
    program: Program
    plan: MemoryPlan


def wide_weights(source: bytes | str | Path, float_source: bytes | str | Path | None) -> WideWeights:
    """The float twins of a uint8 TFLite's weighted ops from `float_source` (the float TFLite of the model it was
    quantized from), checked; every KPU layer 16-bit until WideWeights.only() says otherwise."""
    if float_source is None:
        raise PipelineError("16-bit weights need the float weights of the quantized model; none was given",
                            field="compile.weight_bits", expected="8, or 16 with the export stage's "
                                                                  "model_quantized_float.tflite beside the uint8 one")
    return read_twins(read_tflite(source), read_tflite(float_source))


def compile_tflite(source: bytes | str | Path, *, fuse_leaky: bool = False, kpu_fc: bool = True,
                   weight_bits: int = 8, float_source: bytes | str | Path | None = None) -> Compiled:
    """Compile a full-integer uint8-I/O TFLite model; raises PipelineError for anything the K210 cannot run.
    `fuse_leaky` folds LeakyReLU into the preceding conv's activation table: one KPU layer instead of two, but
    off LiteRT's double rounding by 1 LSB on part of the values, which deep models accumulate (see lower.py).
    `kpu_fc` runs a FULLY_CONNECTED of at most 1024 inputs and outputs on the KPU (4x4-padded 1x1 conv, uint8
    weights) instead of as a float32 CPU layer. `weight_bits` 16 makes every KPU layer's weights 16-bit (the
    header's global mode), requantized from `float_source`, the float TFLite of the model that was quantized;
    activation ranges still come from the uint8 TFLite."""
    if weight_bits not in KPU_WEIGHT_BITS:
        raise PipelineError(f"weight_bits {weight_bits!r}", field="compile.weight_bits",
                            expected=" or ".join(map(str, KPU_WEIGHT_BITS)) + " (the KPU's eight_bit_mode)")
    wide = wide_weights(source, float_source) if weight_bits == 16 else None
    return compile_program(lower_graph(read_tflite(source), fuse_leaky=fuse_leaky, kpu_fc=kpu_fc, wide=wide))


def compile_program(program: Program) -> Compiled:
    """Plan, emit and serialise a lowered program."""
    plan = plan_memory(program)
    model = emit_kmodel(program, plan)
    return Compiled(model=model, data=write_kmodel(model), program=program, plan=plan)
