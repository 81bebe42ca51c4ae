"""Build a rendered firmware folder for the host (a native executable over the RT-Thread API shim), and the
firmware's memory use against the K210's 6 MiB SRAM (every board)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.firmware.boards import HOST, rounding_flags
from deploy.firmware.image_check import section_sizes
from deploy.firmware.render import COMPONENT, COPIED_SOURCE_DIRS, app_command, rendered_kind
from deploy.firmware.rtthread_build import model_folders
from hardware.k210 import SRAM_BYTES as K210_SRAM_BYTES
from pipeline.atomic import atomic_folder
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class BuildResult:
    board: str
    folder: Path
    program: Path  # host executable
    size: dict[str, int | float | bool]


def rendered_model_name(rendered: Path) -> str:
    """The C name of the one model in a rendered folder."""
    folders = model_folders(rendered)
    if len(folders) != 1:
        raise PipelineError(f"{len(folders)} models in one rendered folder", path=rendered,
                            expected=f"exactly one {COMPONENT}/<name>/ (run `invoke render` first)")
    return folders[0].name


def require_tools(tools: tuple[str, ...], packages: tuple[str, ...]) -> None:
    """PipelineError naming the apt packages when a compiler or tool is missing."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise PipelineError(f"{', '.join(missing)} not found on PATH",
                            expected=f"the packages {' '.join(packages)} (run `invoke setup`)")


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PipelineError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
    return proc.stdout


def sram_report(sections: tuple[int, int, int], kmodel_bytes: int, work_bytes: int, kmodel_embedded: bool) -> dict:
    """Firmware + kmodel + runtime working memory against the K210's 6 MiB of general SRAM."""
    text, data, bss = sections
    kmodel_extra = 0 if kmodel_embedded else kmodel_bytes  # a flash-stored model is copied into SRAM at run time
    total = text + data + bss + kmodel_extra + work_bytes
    return {"text": text, "data": data, "bss": bss, "kmodel": kmodel_bytes, "kmodel_in_image": kmodel_embedded,
            "work": work_bytes, "total": total, "sram": K210_SRAM_BYTES,
            "percent": round(100.0 * total / K210_SRAM_BYTES, 1), "fits": total <= K210_SRAM_BYTES}


def build_host(rendered: Path, out: Path, *, rounding: str = "reference", kernel: str = "fast", kmodel_bytes: int = 0,
               work_bytes: int = 0, extra_dirs: tuple[Path, ...] = (), command: str | None = None) -> BuildResult:
    """Compile and link the rendered folder (+ `extra_dirs`: more model or application folders) with the host port
    into `out`/firmware (written atomically), with the soft KPU's rounding and kernel; the program runs `command`
    (default: the model's own)."""
    require_tools((HOST.cc, HOST.size_tool), HOST.apt_packages)
    rendered = Path(rendered)
    name = rendered_model_name(rendered)
    component = rendered / COMPONENT
    source_dirs = [component / name, *map(Path, extra_dirs), *(component / sub for sub in COPIED_SOURCE_DIRS)]
    embedded = (component / name / f"{name}_kmodel.c").is_file()
    command = command or app_command(name, rendered_kind(component / name))
    with atomic_folder(Path(out)) as tmp:
        program = tmp / "firmware"
        sources = [p for d in source_dirs for p in sorted(d.glob("*.c"))] + HOST.port_sources()
        includes = [f"-I{d}" for d in [*source_dirs, *HOST.include_dirs()]]
        cmd = [HOST.cc, *HOST.cflags, f'-DRT_APP_COMMAND="{command}"', *rounding_flags(rounding, kernel), *includes,
               *map(str, sources), "-o", str(program), *HOST.ldflags]
        _run(cmd, f"{HOST.cc} (host build)")
        size = sram_report(section_sizes(HOST.size_tool, program), kmodel_bytes, work_bytes, embedded)
    return BuildResult(board="host", folder=Path(out), program=Path(out) / program.name, size=size)
