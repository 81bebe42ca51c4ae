"""Bit-exact NumPy simulator of kmodel V3 files: the executable definition of what the firmware computes.

State follows spec §7.5b: a 2 MiB KPU RAM (never cleared between layers), a main buffer of main_mem_usage bytes,
and the layers run strictly in file order. KPU layers follow `deploy.k210.sim.kpu_arith` (reference rounding by
default, `rounding="v0.1"` for the documented alternative); CPU layers follow the SDK runtime in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from deploy.k210.format import kmodel as km
from deploy.k210.format.kmodel_io import load_kmodel
from deploy.k210.sim.cpu_ops import MainMemory, run_cpu_layer
from deploy.k210.sim.kpu_arith import ConvStages, check_rounding, run_kpu_layer
from deploy.k210.sim.kpu_ram import read_map, write_map
from deploy.k210.sim.layouts import output_layouts
from hardware.k210 import KERNEL_TYPE_1X1, KERNEL_TYPE_3X3, KPU_RAM_BYTES, PoolType, row_layout
from pipeline.errors import PipelineError


@dataclass
class LayerTrace:
    """What one layer produced: its output array, where it went, and for KPU layers the internal stages."""

    index: int
    type: km.LayerType
    output: np.ndarray
    main_addr: int | None  # byte offset in the main buffer, None when the output stayed in KPU RAM only
    kpu_line: int | None = None
    stages: ConvStages | None = None


@dataclass
class SimResult:
    outputs: list[np.ndarray]  # raw, as stored by the model (uint8 or float32)
    dequantized: list[np.ndarray]  # float32 (uint8 outputs carry no quantization in V3: their codes as float)
    layers: list[LayerTrace] = field(default_factory=list)


def model_input_shape(model: km.KModel) -> tuple[tuple[int, ...], np.dtype]:
    """Input shape and dtype the first layer expects: (C, H, W) uint8 for K210_CONV, (I,) float32 for FC."""
    if not model.layers:
        raise PipelineError("the model has no layers", field="header.layers_length", expected=">= 1")
    first = model.layers[0]
    if isinstance(first.body, km.K210ConvBody):
        return first.body.args.in_shape, np.dtype(np.uint8)
    if isinstance(first.body, km.FullyConnectedBody):
        return (first.body.in_channels,), np.dtype(np.float32)
    raise PipelineError(f"first layer is {first.type.name}", field="layers[0].type",
                        expected="K210_CONV or FULLY_CONNECTED (the SDK runtime's rule)")


def check_conv_layer(body: km.K210ConvBody, name: str) -> None:
    """Reject register values the KPU cannot run or that disagree with the layer's own shapes."""
    a = body.args
    in_c, in_h, in_w = a.in_shape
    out_c, out_h, out_w = a.out_shape

    def bad(what: str, expected: str) -> PipelineError:
        return PipelineError(what, field=f"{name}.kpu_layer_argument", expected=expected)

    if a.kernel_type not in (KERNEL_TYPE_1X1, KERNEL_TYPE_3X3):
        raise bad(f"kernel_type {a.kernel_type}", f"{KERNEL_TYPE_1X1} (1x1) or {KERNEL_TYPE_3X3} (3x3)")
    if a.pool_type not in PoolType._value2member_map_:
        raise bad(f"pool_type {a.pool_type}", f"0..{max(PoolType)}")
    stride = PoolType(a.pool_type).stride
    if (out_h, out_w) != (in_h // stride, in_w // stride):
        raise bad(f"output {out_h}x{out_w} for input {in_h}x{in_w} and pool_type {a.pool_type}",
                  f"{in_h // stride}x{in_w // stride}")
    if a.depth_wise_layer and in_c != out_c:
        raise bad(f"depthwise layer with {in_c} inputs and {out_c} outputs", "equal channel counts")
    for prefix, (h, w), words in (("", (in_h, in_w), (a.channel_switch_addr, a.row_switch_addr, a.coef_group)),
                                  ("wb_", (out_h, out_w), (a.wb_channel_switch_addr, a.wb_row_switch_addr,
                                                           a.wb_group))):
        groups, row_len, _ = row_layout(w)
        if words != (row_len * h, row_len, groups):
            raise bad(f"{prefix}layout words {words} for width {w}", f"{(row_len * h, row_len, groups)} (spec §1.3)")
    if a.shr_x > 15 or a.shr_w > 15:
        raise bad("shift out of range", "shr_x, shr_w <= 15")


def _run_conv(body: km.K210ConvBody, ram: np.ndarray, mem: MainMemory, rounding: str, name: str,
              keep_stages: bool) -> tuple[np.ndarray, int | None, ConvStages | None]:
    check_conv_layer(body, name)
    args = body.args
    x = read_map(ram, args.image_src_addr, args.in_shape, f"{name}.image_src_addr")
    stages = run_kpu_layer(x, args, body.weights, body.bn, body.activation, rounding, name)
    write_map(ram, args.image_dst_addr, stages.output, f"{name}.image_dst_addr")
    main_addr = None
    if body.flags & km.FLAG_MAIN_MEM_OUT:
        main_addr = body.main_mem_out_addr
        mem.write(main_addr, stages.output, f"{name}.main_mem_out_address")
    return stages.output, main_addr, stages if keep_stages else None


def _place_input(model: km.KModel, input_chw: np.ndarray, ram: np.ndarray, mem: MainMemory) -> None:
    shape, dtype = model_input_shape(model)
    array = np.asarray(input_chw)
    if array.shape != shape or array.dtype != dtype:
        raise PipelineError(f"input has shape {array.shape} and dtype {array.dtype}", field="input",
                            expected=f"shape {shape} dtype {dtype} (CHW planar)")
    first = model.layers[0].body
    if isinstance(first, km.K210ConvBody):
        write_map(ram, first.args.image_src_addr, array, "layers[0].image_src_addr")
    else:
        mem.write(first.in_addr, array.astype("<f4"), "layers[0].in_addr")


def _output_arrays(model: km.KModel, mem: MainMemory) -> list[np.ndarray]:
    outputs = []
    for index, (desc, layout) in enumerate(zip(model.outputs, output_layouts(model), strict=True)):
        raw = mem.read(desc.address, prod(layout.shape), layout.dtype.str, f"outputs[{index}]").reshape(layout.shape)
        outputs.append(raw.astype(np.float32) if layout.is_float else raw)
    return outputs


def dequantize_outputs(outputs: list[np.ndarray]) -> list[np.ndarray]:
    """SimResult.dequantized of raw outputs (V3 uint8 outputs carry no quantization: their codes as float)."""
    return [o.astype(np.float32) for o in outputs]


def simulate(kmodel: bytes | Path | str | km.KModel, input_chw: np.ndarray, *, rounding: str = "reference",
             keep_stages: bool = False) -> SimResult:
    """Run a kmodel V3 on one input: (C, H, W) uint8 for a model starting with K210_CONV, float32 for one
    starting with FULLY_CONNECTED. `keep_stages` also keeps each KPU layer's accumulator/BN/activation arrays."""
    check_rounding(rounding)
    model = kmodel if isinstance(kmodel, km.KModel) else load_kmodel(kmodel)
    ram = np.zeros(KPU_RAM_BYTES, dtype=np.uint8)
    mem = MainMemory(model.main_mem_usage)
    _place_input(model, input_chw, ram, mem)
    traces: list[LayerTrace] = []
    for index, layer in enumerate(model.layers):
        name = f"layers[{index}]({layer.type.name})"
        if isinstance(layer.body, km.K210ConvBody):
            output, main_addr, stages = _run_conv(layer.body, ram, mem, rounding, name, keep_stages)
            traces.append(LayerTrace(index, layer.type, output, main_addr, layer.body.args.image_dst_addr, stages))
            continue
        output = run_cpu_layer(layer, mem, ram, name)
        main_addr = getattr(layer.body, "out_addr", None)
        kpu_line = getattr(layer.body, "kpu_out_line", None)
        traces.append(LayerTrace(index, layer.type, output, main_addr, kpu_line))
    outputs = _output_arrays(model, mem)
    return SimResult(outputs=outputs, dequantized=dequantize_outputs(outputs), layers=traces)
