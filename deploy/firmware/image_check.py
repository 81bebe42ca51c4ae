"""Prove that a linked RT-Thread image holds the application: each model's msh command and its rt_ai registration
(symbols of the ELF), each embedded kmodel byte for byte at its address, plus section sizes and the bytes each
component adds (from the linker map)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from pipeline.errors import PipelineError

# An input section in GNU ld's map: [name] address size object (the name may stand alone on the line before).
MAP_INPUT = re.compile(r"^\s+(\S+)\s+0x([0-9a-f]{8,16})\s+0x([0-9a-f]+)\s+(\S+\.o\)?)$")
NOT_LOADED = (".debug", ".comment", ".riscv.attributes", ".note", ".stab")  # sections that take no target memory
MAP_START = "Linker script and memory map"


@dataclass(frozen=True)
class ImageReport:
    text: int
    data: int
    bss: int
    models: dict[str, dict]  # name -> where its command, registration and kmodel are
    components: dict[str, int]  # component -> bytes of its input sections in the image
    bss_end: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def command_symbol(command: str) -> str:
    """The finsh symbol-table entry MSH_CMD_EXPORT(<command>, ...) creates."""
    return f"__fsym_{command}"


def registration_symbols(name: str) -> tuple[str, ...]:
    """The INIT_APP_EXPORT entry of the model's rt_ai registration (the second form under RT_DEBUGING_INIT)."""
    return f"__rt_init_rt_ai_{name}_register", f"__rt_init_desc_rt_ai_{name}_register"


def _symbols(elf: ELFFile) -> dict[str, tuple[int, int]]:
    table = elf.get_section_by_name(".symtab")
    if not isinstance(table, SymbolTableSection):
        raise PipelineError("the image has no symbol table", expected="an unstripped rtthread.elf")
    return {s.name: (s["st_value"], s["st_size"]) for s in table.iter_symbols() if s.name}


def _bytes_at(elf: ELFFile, address: int, size: int) -> bytes | None:
    for section in elf.iter_sections():
        start = section["sh_addr"]
        if section["sh_type"] != "SHT_NOBITS" and start <= address and address + size <= start + section["sh_size"]:
            return section.data()[address - start:address - start + size]
    return None


def section_sizes(size_tool: str, program: Path) -> tuple[int, int, int]:
    """text, data, bss of a linked program (Berkeley `size` output)."""
    proc = subprocess.run([size_tool, str(program)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PipelineError(f"{size_tool} failed: {proc.stderr.strip()}", path=program)
    text, data, bss = (int(v) for v in proc.stdout.strip().splitlines()[-1].split()[:3])
    return text, data, bss


def component_of(obj: str) -> str:
    """Which part of the build an object file of the map belongs to."""
    parts = Path(obj.split("(")[0]).parts
    if "(" in obj:  # a library member: libc.a(...)
        return Path(obj.split("(")[0]).name
    if parts and parts[0] == "build" and len(parts) > 1:
        return "kernel" if parts[1] == "kernel" else parts[1]
    return parts[0] if parts else obj


def component_bytes(map_file: Path) -> dict[str, int]:
    """Bytes of input sections in the image per component (face_ai, face_port, kernel, packages, drivers, libc.a...)."""
    totals: dict[str, int] = {}
    text = map_file.read_text(errors="replace")
    start = text.find(MAP_START)
    if start < 0:
        raise PipelineError("not a GNU ld map file", path=map_file, expected=f"a '{MAP_START}' section")
    pending = ""
    for line in text[start:].splitlines():
        found = MAP_INPUT.match(pending + line)
        pending = line if re.fullmatch(r"\s\S+", line) else ""  # a long section name wraps onto the next line
        if found and not found.group(1).startswith(NOT_LOADED):
            name = component_of(found.group(4))
            totals[name] = totals.get(name, 0) + int(found.group(3), 16)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def check_image(elf_path: Path, map_file: Path, size_tool: str, commands: dict[str, str],
                embedded_kmodels: dict[str, Path], app_commands: tuple[str, ...] = ()) -> ImageReport:
    """PipelineError naming what is missing unless every model's command (`commands`: model name -> its msh
    command), registration and embedded kmodel, and every application command, are in the image."""
    with open(elf_path, "rb") as handle:
        elf = ELFFile(handle)
        symbols = _symbols(elf)
        models: dict[str, dict] = {}
        for name, command in commands.items():
            found = {"msh": command}
            wanted = (("command", (command_symbol(command),)), ("registration", registration_symbols(name)))
            for what, candidates in wanted:
                present = [s for s in candidates if s in symbols]
                if not present:
                    raise PipelineError(f"the image has no {what} of model {name!r} (symbol {candidates[0]})",
                                        path=elf_path, expected="the face_ai component built into the BSP "
                                                                "(see scons.log in the BSP copy)")
                found[what] = f"{symbols[present[0]][0]:#x}"
            kmodel = embedded_kmodels.get(name)
            if kmodel is not None:
                found["kmodel"] = _check_kmodel(elf, symbols, name, Path(kmodel), elf_path)
            models[name] = found
        for command in app_commands:
            if command_symbol(command) not in symbols:
                raise PipelineError(f"the image has no msh command {command} (symbol {command_symbol(command)})",
                                    path=elf_path, expected="the application folder built into the BSP (see "
                                                            "scons.log in the BSP copy)")
        bss_end = symbols.get("__bss_end", (None, 0))[0]
    text, data, bss = section_sizes(size_tool, elf_path)
    return ImageReport(text=text, data=data, bss=bss, models=models, components=component_bytes(map_file),
                       bss_end=bss_end)


def _check_kmodel(elf: ELFFile, symbols: dict[str, tuple[int, int]], name: str, kmodel: Path,
                  elf_path: Path) -> dict:
    symbol = f"{name}_kmodel"
    want = kmodel.read_bytes()
    if symbol not in symbols:
        raise PipelineError(f"the image has no kmodel array {symbol}", path=elf_path,
                            expected=f"the {len(want)}-byte kmodel of {kmodel} linked in")
    address, size = symbols[symbol]
    if size != len(want) or _bytes_at(elf, address, size) != want:
        raise PipelineError(f"{symbol} at {address:#x} ({size} bytes) is not the kmodel", path=elf_path,
                            expected=f"the {len(want)} bytes of {kmodel}")
    return {"address": f"{address:#x}", "bytes": size, "alignment_ok": address % 256 == 0}
