"""Where every tensor lives (spec §7.6): KPU RAM lines for maps a KPU layer reads or writes, main-buffer bytes
for tensors the CPU reads or writes and for model outputs. Adds the K210_UPLOAD steps and main-memory (DMA)
outputs this requires, then packs buffers by lifetime with a first-fit allocator."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.k210.compiler.program import CpuStep, KpuStep, LTensor, Program
from deploy.k210.format import kmodel as km
from hardware.k210 import KPU_RAM_LINES, map_lines, row_layout
from pipeline.errors import PipelineError

MAIN_ALIGN = 8


def place_tensors(prog: Program) -> None:
    """Set DMA outputs on KPU steps whose result the CPU reads, and upload CPU results that a KPU layer reads."""
    kpu_need = {step.input for step in prog.steps if isinstance(step, KpuStep)}
    main_need = {name for step in prog.steps if isinstance(step, CpuStep) for name in step.inputs}
    main_need |= set(prog.outputs)
    if not prog.steps or not isinstance(prog.steps[0], KpuStep) or prog.steps[0].input != prog.input:
        raise PipelineError("the model does not start with a convolution on its input", field="model input",
                            expected="a Conv2D as the first layer: the K210 runtime feeds the input to a KPU layer")
    if prog.input in main_need:
        raise PipelineError("the model input also feeds a CPU layer", field="model input",
                            expected="the input consumed only by KPU convolutions (SDK rule)")
    steps: list[KpuStep | CpuStep] = []
    for step in prog.steps:
        steps.append(step)
        if isinstance(step, KpuStep):
            step.main_out = bool(_lineage(prog, step.output) & main_need)
        elif step.output in kpu_need and not step.writes_kpu:
            steps.append(_upload_step(prog.tensors[step.output]))
    prog.steps = steps


def _lineage(prog: Program, name: str) -> set[str]:
    """A tensor and the maps it is stored inside (its concat / channel-slice parents)."""
    names = {name}
    while prog.tensors[name].kpu_parent is not None:
        name = prog.tensors[name].kpu_parent[0]
        names.add(name)
    return names


def _upload_step(tensor: LTensor) -> CpuStep:
    c, h, w = tensor.shape
    return CpuStep(source="upload for KPU", layer_type=km.LayerType.K210_UPLOAD, inputs=[tensor.name],
                   output=tensor.name, build=lambda a: km.UploadBody(0, a.main(tensor.name), a.kpu(tensor.name), w, h,
                                                                      c), elements=c * h * w)


@dataclass
class _Buffer:
    key: str
    size: int
    first: int
    last: int
    offset: int = -1


@dataclass
class MemoryPlan:
    kpu_line: dict[str, int]  # storage-owning tensor -> first line
    main_addr: dict[str, int]
    main_usage: int
    kpu_lines_used: int  # peak lines in use at once
    min_line: int
    tensors: dict[str, LTensor]

    def main(self, tensor: str) -> int:
        """Byte offset in the main buffer; a channel slice of a map sits inside its parent (compact CHW)."""
        t = self.tensors[tensor]
        if t.kpu_parent is None:
            return self.main_addr[tensor]
        parent, channel = t.kpu_parent
        return self.main(parent) + channel * t.shape[1] * t.shape[2]

    def kpu(self, tensor: str) -> int:
        """Line of a map, following concat parents (a part starts at its parent's channel block)."""
        t = self.tensors[tensor]
        if t.kpu_parent is None:
            return self.kpu_line[tensor]
        parent, channel = t.kpu_parent
        _, height, width = self.tensors[parent].shape
        groups, row_len, _ = row_layout(width)
        return self.kpu(parent) + (channel // groups) * row_len * height


def _root(prog: Program, name: str) -> str:
    parent = prog.tensors[name].kpu_parent
    return name if parent is None else _root(prog, parent[0])


def _lifetimes(prog: Program) -> tuple[dict[str, _Buffer], dict[str, _Buffer]]:
    kpu: dict[str, _Buffer] = {}
    main: dict[str, _Buffer] = {}

    def touch(table: dict[str, _Buffer], key: str, size: int, index: int) -> None:
        if key in table:
            table[key].first, table[key].last = min(table[key].first, index), max(table[key].last, index)
        else:
            table[key] = _Buffer(key, size, index, index)

    def kpu_touch(name: str, index: int) -> None:
        root = _root(prog, name)
        touch(kpu, root, map_lines(*prog.tensors[root].shape), index)

    def main_touch(name: str, index: int) -> None:
        root = _root(prog, name)
        touch(main, root, -(-prog.tensors[root].size // MAIN_ALIGN) * MAIN_ALIGN, index)

    kpu_touch(prog.input, -1)
    for index, step in enumerate(prog.steps):
        if isinstance(step, KpuStep):
            kpu_touch(step.input, index)
            kpu_touch(step.output, index)
            if step.main_out:
                main_touch(step.output, index)
        elif step.writes_kpu:
            for name in step.inputs:
                main_touch(name, index)
            kpu_touch(step.output, index)
        else:
            for name in step.inputs + [step.output]:
                main_touch(name, index)
    for name in prog.outputs:
        main_touch(name, len(prog.steps))
    return kpu, main


def _first_fit(buffers: list[_Buffer], capacity: int | None, unit: str, prog: Program) -> int:
    """Assign offsets; returns the peak end. Buffers alive at the same step never overlap."""
    placed: list[_Buffer] = []
    peak = 0
    for buf in sorted(buffers, key=lambda b: (b.first, -b.size)):
        live = sorted((b for b in placed if b.last >= buf.first and b.first <= buf.last), key=lambda b: b.offset)
        offset = 0
        for other in live:
            if offset + buf.size <= other.offset:
                break
            offset = max(offset, other.offset + other.size)
        if capacity is not None and offset + buf.size > capacity:
            step = prog.steps[max(buf.first, 0)]
            in_use = sum(b.size for b in live)
            raise PipelineError(f"KPU RAM is full at layer '{step.source}': map '{buf.key}' needs {buf.size} {unit} "
                                f"while {in_use} of {capacity} are in use", field=buf.key,
                                expected="smaller feature maps (input size or channels) so that every layer's "
                                         "input and output fit in the 2 MiB KPU RAM together")
        buf.offset = offset
        placed.append(buf)
        peak = max(peak, offset + buf.size)
    return peak


def plan_memory(prog: Program) -> MemoryPlan:
    """Place tensors (adding uploads/DMA outputs) and assign KPU lines and main-buffer offsets."""
    place_tensors(prog)
    kpu, main = _lifetimes(prog)
    kpu_peak = _first_fit(list(kpu.values()), KPU_RAM_LINES, "lines", prog)
    main_usage = _first_fit(list(main.values()), None, "bytes", prog)
    lines = {key: buf.offset for key, buf in kpu.items()}
    return MemoryPlan(kpu_line=lines, main_addr={key: buf.offset for key, buf in main.items()},
                      main_usage=main_usage, kpu_lines_used=kpu_peak, min_line=min(lines.values(), default=32768),
                      tensors=prog.tensors)
