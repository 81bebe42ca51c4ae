"""Build a rendered firmware folder for the host (native executable) or QEMU (bare-metal RV64 ELF + raw bin), and
report its size against the K210's 6 MiB SRAM."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.firmware.atomic_folder import atomic_folder
from deploy.firmware.boards import Board, board, rounding_flags
from deploy.firmware.k210_headers import write_k210_headers
from deploy.firmware.memory_map import write_memory_map_header
from hardware.k210 import SRAM_BYTES as K210_SRAM_BYTES
from pipeline.errors import PipelineError

SOURCE_SUBDIRS = ("", "rt_ai", "app", "runtime")


@dataclass(frozen=True)
class BuildResult:
    board: str
    folder: Path
    program: Path  # host executable or QEMU ELF
    image: Path | None  # raw firmware.bin (QEMU)
    size: dict[str, int | float | bool]


def rendered_model_name(rendered: Path) -> str:
    """The model's C name, from the rt_ai_<name>_model.c the renderer wrote."""
    found = sorted(Path(rendered).glob("rt_ai_*_model.c"))
    if len(found) != 1:
        raise PipelineError("not a rendered firmware folder", path=rendered,
                            expected="exactly one rt_ai_<name>_model.c (run `invoke render` first)")
    return found[0].name[len("rt_ai_"):-len("_model.c")]


def require_tools(b: Board) -> None:
    """PipelineError naming the apt packages when the board's compiler is missing."""
    missing = [tool for tool in (b.cc, b.size_tool) if shutil.which(tool) is None]
    if missing:
        raise PipelineError(f"{', '.join(missing)} not found on PATH",
                            expected=f"the packages {' '.join(b.apt_packages)} (run `invoke setup`)")


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise PipelineError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
    return proc.stdout


def _sources(rendered: Path, b: Board) -> list[Path]:
    sources = [p for sub in SOURCE_SUBDIRS for p in sorted((rendered / sub).glob("*.c"))]
    return sources + b.port_sources()


def _includes(rendered: Path, b: Board, generated: Path) -> list[str]:
    dirs = [rendered / sub for sub in SOURCE_SUBDIRS] + b.include_dirs() + [generated]
    return [f"-I{d}" for d in dirs]


def _linker_script(b: Board, generated: Path, includes: list[str]) -> list[str]:
    """QEMU: preprocess firmware/port/qemu/link.ld.in with the generated memory map."""
    if b.port != "qemu":
        return []
    script = generated / "link.ld"
    source = b.include_dirs()[-1] / "link.ld.in"
    _run([b.cc, "-E", "-P", "-x", "c", *includes, "-o", str(script), str(source)], "preprocessing the linker script")
    return [f"-T{script}"]


def section_sizes(b: Board, program: Path) -> tuple[int, int, int]:
    """text, data, bss of a linked program (Berkeley `size` output)."""
    lines = _run([b.size_tool, str(program)], "size").strip().splitlines()
    text, data, bss = (int(v) for v in lines[-1].split()[:3])
    return text, data, bss


def sram_report(sections: tuple[int, int, int], kmodel_bytes: int, work_bytes: int, kmodel_embedded: bool) -> dict:
    """Firmware + kmodel + runtime working memory against the K210's 6 MiB of general SRAM."""
    text, data, bss = sections
    kmodel_extra = 0 if kmodel_embedded else kmodel_bytes  # a flash-stored model is copied into SRAM at run time
    total = text + data + bss + kmodel_extra + work_bytes
    return {"text": text, "data": data, "bss": bss, "kmodel": kmodel_bytes, "kmodel_in_image": kmodel_embedded,
            "work": work_bytes, "total": total, "sram": K210_SRAM_BYTES,
            "percent": round(100.0 * total / K210_SRAM_BYTES, 1), "fits": total <= K210_SRAM_BYTES}


def build_firmware(rendered: Path, board_name: str, out: Path, *, rounding: str = "reference",
                   kmodel_bytes: int = 0, work_bytes: int = 0) -> BuildResult:
    """Compile and link the rendered folder for host or qemu into `out` (written atomically)."""
    b = board(board_name)
    require_tools(b)
    rendered = Path(rendered)
    name = rendered_model_name(rendered)
    embedded = (rendered / f"{name}_kmodel.c").is_file()
    with atomic_folder(Path(out)) as tmp:
        generated = tmp / "generated"
        generated.mkdir()
        write_memory_map_header(generated / "memory_map.h")
        write_k210_headers(generated)
        includes = _includes(rendered, b, generated)
        program = tmp / ("firmware" if b.name == "host" else "firmware.elf")
        defines = [f'-DRT_APP_COMMAND="{name}_detect"', *rounding_flags(rounding)]
        cmd = [b.cc, *b.cflags, *defines, *includes, *_linker_script(b, generated, includes),
               *map(str, _sources(rendered, b)), "-o", str(program), *b.ldflags]
        _run(cmd, f"{b.cc} ({b.name} build)")
        image = None
        if b.objcopy:
            image = tmp / "firmware.bin"
            _run([b.objcopy, "-O", "binary", str(program), str(image)], "objcopy")
        size = sram_report(section_sizes(b, program), kmodel_bytes, work_bytes, embedded)
    final_program = Path(out) / program.name
    return BuildResult(board=b.name, folder=Path(out), program=final_program,
                       image=Path(out) / image.name if image else None, size=size)
