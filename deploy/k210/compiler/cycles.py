"""Per-layer cost estimate (spec §12.3, an [I] model fitted to Sipeed's measurements, not an official one).

KPU layer: cycles = 1.03 * N + 0.31 * weight_bytes / 2 (8-bit weights halve the fetch constant), where N counts
line-steps: rl(W_in) * H_in * ceil(C_in / g(W_in)) * C_out for a normal conv, without C_out for depthwise.
A layer with a main-memory output adds its DMA (one 64-bit beat per cycle). CPU layers: a rough RV64 estimate of
CPU_CYCLES_PER_VALUE per value touched plus CPU_CYCLES_PER_MAC for float multiply-accumulates; every layer adds
LAYER_OVERHEAD_CYCLES for the interrupt / dispatch.
"""

from __future__ import annotations

from deploy.k210.compiler.program import CpuStep, KpuStep
from hardware.k210 import ACTIVATION_TABLE_BYTES, BN_WORD_BYTES, row_layout

KPU_HZ = 400_000_000
CPU_HZ = 400_000_000
LINE_STEP_CYCLES = 1.03
WEIGHT_FETCH_CYCLES_PER_BYTE = 0.31 / 2
CPU_CYCLES_PER_VALUE = 8
CPU_CYCLES_PER_MAC = 4
DMA_BYTES_PER_CYCLE = 8
LAYER_OVERHEAD_CYCLES = 800  # ~2 us of interrupt and dispatch per layer


def line_steps(in_shape: tuple[int, int, int], out_channels: int, depthwise: bool) -> int:
    """KPU line-steps of one layer from its (C, H, W) input (spec §12.3)."""
    channels, height, width = in_shape
    groups, row_len, _ = row_layout(width)
    steps = row_len * height * -(-channels // groups)
    return steps if depthwise else steps * out_channels


def kpu_weight_bytes(step: KpuStep) -> int:
    """Weights plus batch-norm words plus the activation table."""
    return int(step.weights.size) + BN_WORD_BYTES * step.out_shape[0] + ACTIVATION_TABLE_BYTES


def step_cycles(step: KpuStep | CpuStep, output_bytes: int) -> tuple[int, str]:
    """(estimated cycles, 'kpu' or 'cpu') at KPU_HZ / CPU_HZ."""
    if isinstance(step, KpuStep):
        steps = line_steps(step.in_shape, step.out_shape[0], step.depthwise)
        cycles = LINE_STEP_CYCLES * steps + WEIGHT_FETCH_CYCLES_PER_BYTE * kpu_weight_bytes(step)
        if step.main_out:
            cycles += output_bytes / DMA_BYTES_PER_CYCLE
        return int(cycles + LAYER_OVERHEAD_CYCLES), "kpu"
    cycles = CPU_CYCLES_PER_VALUE * step.elements + CPU_CYCLES_PER_MAC * step.macs + LAYER_OVERHEAD_CYCLES
    return int(cycles), "cpu"
