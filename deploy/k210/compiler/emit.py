"""Turn a lowered, memory-planned program into a kmodel V3 (register blocks filled per spec §2.1)."""

from __future__ import annotations

from deploy.k210.compiler.memory_plan import MemoryPlan
from deploy.k210.compiler.program import KpuStep, Program
from deploy.k210.format import kmodel as km
from deploy.k210.format.registers import KpuLayerArgs
from hardware.k210 import KERNEL_TYPE_1X1, KERNEL_TYPE_3X3, PoolType, row_layout, weight_load_bytes
from pipeline.errors import PipelineError


def conv_registers(step: KpuStep, src_line: int, dst_line: int) -> KpuLayerArgs:
    """The 12 register words of one KPU layer (8- or 16-bit weights: nncase's 30 / 60 KiB per weight load)."""
    in_c, in_h, in_w = step.in_shape
    out_c, out_h, out_w = step.out_shape
    stride = PoolType(step.pool_type).stride
    if (out_h, out_w) != (in_h // stride, in_w // stride):
        raise PipelineError(f"output {out_h}x{out_w} of a {in_h}x{in_w} map with pool type {step.pool_type}",
                            field=step.source, expected=f"{in_h // stride}x{in_w // stride} (the KPU pool stride)")
    g_in, rl_in, _ = row_layout(in_w)
    g_out, rl_out, _ = row_layout(out_w)
    a = step.arithmetic
    if step.depthwise:
        per_load, para_size, loads = out_c, step.weights.nbytes, 1
    else:
        one_channel = step.kernel ** 2 * in_c * step.weights.itemsize
        per_load = min(out_c, weight_load_bytes(step.weight_bits) // one_channel)
        para_size, loads = per_load * one_channel, -(-out_c // per_load)
    return KpuLayerArgs(
        depth_wise_layer=int(step.depthwise), image_src_addr=src_line, image_dst_addr=dst_line,
        i_ch_num=in_c - 1, o_ch_num=out_c - 1, o_ch_num_coef=per_load - 1,
        i_row_wid=in_w - 1, i_col_high=in_h - 1, o_row_wid=out_w - 1, o_col_high=out_h - 1,
        kernel_type=KERNEL_TYPE_3X3 if step.kernel == 3 else KERNEL_TYPE_1X1, pool_type=int(step.pool_type),
        pad_value=a.pad_value,
        load_time=loads - 1, para_size=para_size,
        channel_switch_addr=rl_in * in_h, row_switch_addr=rl_in, coef_group=g_in,
        wb_channel_switch_addr=rl_out * out_h, wb_row_switch_addr=rl_out, wb_group=g_out,
        arg_x=a.arg_x, arg_w=a.arg_w, arg_add=a.arg_add,
        channel_byte_num=out_w * out_h - 1, dma_total_byte=out_w * out_h * out_c - 1)


def emit_kmodel(prog: Program, plan: MemoryPlan) -> km.KModel:
    """The kmodel of a planned program. Its header flag says 8-bit weights when every KPU layer has them, else
    16-bit; a per-layer mix (the sensitivity check's, for the simulator) is refused by write_kmodel."""
    layers = []
    for step in prog.steps:
        if isinstance(step, KpuStep):
            args = conv_registers(step, plan.kpu(step.input), plan.kpu(step.output))
            body = km.K210ConvBody(flags=int(step.main_out),
                                   main_mem_out_addr=plan.main(step.output) if step.main_out else 0, args=args,
                                   weights=step.weights, bn=step.arithmetic.bn, activation=step.arithmetic.activation)
            layers.append(km.Layer(km.LayerType.K210_CONV, body))
        else:
            layers.append(km.Layer(step.layer_type, step.build(plan)))
    outputs = [km.OutputDesc(plan.main(name), prog.tensors[name].size) for name in prog.outputs]
    eight_bit = all(s.weight_bits == 8 for s in prog.steps if isinstance(s, KpuStep))
    return km.KModel(flags=km.FLAG_EIGHT_BIT_WEIGHTS if eight_bit else 0, max_start_address=plan.min_line,
                     main_mem_usage=plan.main_usage, outputs=outputs, layers=layers)
