"""Build rendered models into a real RT-Thread BSP (bsp/qemu-virt64-riscv for the qemu and sim boards, bsp/k210 for
the board): the BSP is copied into the build folder (the tree itself is never written), adapted to the toolchain
found, given `face_ai/` (the shared runtime + one folder per model) and `face_port/` (the board port), built with
scons, and the image is checked to hold what it should."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.firmware.boards import BSP_TARGETS, PORT_DIR, BspTarget, rounding_flags
from deploy.firmware.image_check import ImageReport, check_image
from deploy.firmware.k210_board import k210_board_header
from deploy.firmware.memory_map import check_kernel_fits, memory_map_header
from deploy.firmware.render import COMPONENT, app_command, rendered_kind
from deploy.firmware.rtthread_tree import (
    RTAK_LIB_FOLDER,
    Toolchain,
    find_bsp,
    find_k210_sdk,
    find_rtak_lib,
    find_rtt_root,
    find_toolchain,
)
from pipeline.atomic import atomic_folder
from pipeline.errors import PipelineError

SCONS_TIMEOUT_S = 1800
AI_ENABLE_LINE = "#define RT_AI_USE_K210"
RTAK_ENABLE_LINE = "#define RT_AI_USE_RTAK"
RT_AI_RUNTIMES = ("ours", "rtak")
PORT_FOLDER = "face_port"
COMPAT_SYSCALL_H = ("/* face-k210 build copy: picolibc has no <machine/syscall.h>, which the K210 SDK's syscalls.h "
                    "includes;\n * the SDK sources built here use none of its SYS_* numbers. */\n")


@dataclass(frozen=True)
class RtthreadBuild:
    board: str
    folder: Path  # rtthread.elf, rtthread.bin, rtthread.map
    image: Path
    toolchain: Toolchain
    rtt_root: Path
    report: ImageReport


def model_folders(rendered: Path) -> list[Path]:
    """The model sub-folders of a rendered face_ai/ (each has a SConscript and an rt_ai_<name>_model.c)."""
    component = Path(rendered) / COMPONENT
    found = sorted(p.parent for p in component.glob("*/rt_ai_*_model.c")) if component.is_dir() else []
    if not found:
        raise PipelineError("not a rendered firmware folder", path=rendered,
                            expected=f"{COMPONENT}/<name>/rt_ai_<name>_model.c (run `invoke render` first)")
    return found


def _shared_digest(rendered: Path) -> str:
    """SHA-256 over the shared part of face_ai/ (everything but the model folders)."""
    component = Path(rendered) / COMPONENT
    models = {p.name for p in model_folders(rendered)}
    digest = hashlib.sha256()
    for path in sorted(component.rglob("*")):
        rel = path.relative_to(component)
        if path.is_file() and rel.parts[0] not in models:
            digest.update(str(rel).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def install_component(renders: list[Path], bsp_copy: Path, apps: tuple[Path, ...] = ()) -> list[str]:
    """<bsp>/face_ai/ anew: the shared runtime of the first rendered folder, the model folder of each and the
    application folders `apps` (face_ai/<app>/ of their own renders); returns the model names. Two models of one
    name, or rendered by different versions of the runtime, are refused by name."""
    target = bsp_copy / COMPONENT
    shutil.rmtree(target, ignore_errors=True)  # a stale model folder from an earlier build goes with it
    shutil.copytree(Path(renders[0]) / COMPONENT, target,
                    ignore=shutil.ignore_patterns(*(p.name for p in model_folders(renders[0]))))
    names: list[str] = []
    reference = _shared_digest(renders[0])
    for rendered in renders:
        if _shared_digest(rendered) != reference:
            raise PipelineError("rendered with a different face_ai runtime than the first model", path=rendered,
                                expected=f"every model rendered by this version (re-run `invoke render` for it and "
                                         f"for {renders[0]})")
        for folder in model_folders(rendered):
            if folder.name in names:
                raise PipelineError(f"two models named {folder.name!r} in one firmware", path=rendered,
                                    field="firmware.name", expected="a different name for each model")
            shutil.copytree(folder, target / folder.name)
            names.append(folder.name)
    for app in apps:
        if (target / Path(app).name).exists():
            raise PipelineError(f"an application folder named like a model: {Path(app).name!r}", path=app,
                                expected="a model name other than the application's")
        shutil.copytree(app, target / Path(app).name)
    return names


def install_port(target: BspTarget, toolchain: Toolchain, bsp_copy: Path, generated: dict[str, str]) -> None:
    """<bsp>/face_port/: rt_port_board.h, common/, the board's port folder (+ generated headers in it) and, for
    Debian's picolibc toolchain, the libc glue and a compat include folder."""
    port = bsp_copy / PORT_FOLDER
    shutil.rmtree(port, ignore_errors=True)
    port.mkdir()
    shutil.copy2(PORT_DIR / "SConscript", port / "SConscript")
    shutil.copy2(PORT_DIR / "rt_port_board.h", port / "rt_port_board.h")
    shutil.copytree(PORT_DIR / "common", port / "common", ignore=shutil.ignore_patterns("rt_port_core.c"))
    shutil.copytree(PORT_DIR / target.port, port / target.port)
    for name, text in generated.items():
        (port / target.port / name).write_text(text)
    if toolchain.picolibc:
        shutil.copytree(PORT_DIR / "rtthread", port / "rtthread")
        (port / "compat" / "machine").mkdir(parents=True)
        (port / "compat" / "machine" / "syscall.h").write_text(COMPAT_SYSCALL_H)


def picolibc_rtconfig(target: BspTarget, toolchain: Toolchain, compat: Path) -> str:
    """What the build copy appends to the BSP's rtconfig.py for Debian's riscv64-unknown-elf-gcc + picolibc."""
    fixes = list(target.debian_flag_fixes)
    return f"""
# ---- appended in this build copy by face-k210 (deploy/firmware/rtthread_build.py): Debian's
# {toolchain.prefix}gcc with picolibc instead of the toolchain named above.
EXEC_PATH = {str(toolchain.exec_path)!r}
PREFIX = {toolchain.prefix!r}
CC = PREFIX + 'gcc'
CXX = PREFIX + 'g++'
AS = PREFIX + 'gcc'
AR = PREFIX + 'ar'
LINK = PREFIX + 'gcc'
SIZE = PREFIX + 'size'
OBJDUMP = PREFIX + 'objdump'
OBJCPY = PREFIX + 'objcopy'
for _old, _new in {fixes!r}:  # flags Debian's multilib set does not carry
    CFLAGS, AFLAGS, LFLAGS = (f.replace(_old, _new) for f in (CFLAGS, AFLAGS, LFLAGS))
# picolibc's errno through RT-Thread's _rt_errno(), declared before rtthread.h defines its own errno
CFLAGS += ' --specs=picolibc.specs -D__PICOLIBC_ERRNO_FUNCTION=_rt_errno -include errno.h -I{compat}'
LFLAGS = LFLAGS.replace(' -lsupc++', '') + ' --specs=picolibc.specs'  # no C++ library with picolibc
CXXFLAGS = CFLAGS
DUMP_ACTION = OBJDUMP + ' -D -S $TARGET > rtthread.asm\\n'
POST_ACTION = OBJCPY + ' -O binary $TARGET rtthread.bin\\n' + SIZE + ' $TARGET \\n'
"""


def kconfig_block_defaults(kconfig: Path, guard: str) -> dict[str, str]:
    """The `config NAME ... default VALUE` pairs inside `if GUARD ... endif` of a Kconfig file."""
    text = kconfig.read_text(errors="replace")
    block = re.search(rf"^if {guard}\n(.*?)^endif", text, re.MULTILINE | re.DOTALL)
    if block is None:
        raise PipelineError(f"no `if {guard}` block", path=kconfig, expected="bsp/k210's drivers/Kconfig")
    return dict(re.findall(r"config (\w+)\n(?:.*\n)*?\s+default (\S+)", block.group(1)))


def _enable_camera(lines: list[str], bsp_copy: Path) -> list[str]:
    """bsp/k210 builds its camera driver (and its header path) only with BSP_USING_CAMERA: enable it, with the
    BSP's Kconfig pin defaults, where menuconfig has not (a user's own setting is kept)."""
    if "#define BSP_USING_CAMERA" in (line.strip() for line in lines):
        return lines
    pins = kconfig_block_defaults(bsp_copy / "drivers" / "Kconfig", "BSP_USING_CAMERA")
    added = ["#define BSP_USING_CAMERA"] + [f"#define {name} {value}" for name, value in pins.items()]
    return _before_last_endif(lines, added)


def _before_last_endif(lines: list[str], added: list[str]) -> list[str]:
    last_endif = max((i for i, line in enumerate(lines) if line.strip().startswith("#endif")), default=len(lines))
    return lines[:last_endif] + added + lines[last_endif:]


def _edit_rtconfig_h(path: Path, *, k210: bool, no_cplusplus: bool) -> None:
    lines = path.read_text().splitlines()
    if no_cplusplus:  # the SDK's nncase C++ sources and RT-Thread's C++ support need a C++ library
        lines = [f"/* {line.strip()}: off in this build copy (picolibc has no C++ library) */"
                 if line.strip() == "#define RT_USING_CPLUSPLUS" else line for line in lines]
    if k210:
        lines = _enable_camera(lines, path.parent)
        if AI_ENABLE_LINE not in (line.strip() for line in lines):
            lines = _before_last_endif(lines, [AI_ENABLE_LINE])
    path.write_text("\n".join(lines) + "\n")


def _drop_sdk_cplusplus(sdk_sconscript: Path) -> None:
    """The K210 SDK's nncase runtime (V4/V5 kmodels) is C++; a picolibc build leaves it out."""
    text = sdk_sconscript.read_text()
    sdk_sconscript.write_text("\n".join(line for line in text.splitlines() if not line.strip().endswith(".cpp")) + "\n")


def _source_kconfig(kconfig: Path) -> None:
    """menuconfig keeps RT_AI_USE_K210 only when the component's Kconfig is sourced from the BSP's."""
    line = f'source "{COMPONENT}/Kconfig"'
    text = kconfig.read_text()
    if line not in text:
        kconfig.write_text(text.rstrip("\n") + f"\n{line}\n")


def _build_outputs(bsp: Path):
    """copytree ignore: what an earlier build left in the BSP itself (objects, images, our folders)."""
    top = {"build", "rtthread.elf", "rtthread.bin", "rtthread.map", ".sconsign.dblite", COMPONENT, PORT_FOLDER,
           RTAK_LIB_FOLDER}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return top & set(names) if Path(folder) == bsp else set()

    return ignore


def prepare_bsp_copy(target: BspTarget, root: Path, toolchain: Toolchain, bsp_copy: Path,
                     cflags: tuple[str, ...] = ()) -> None:
    """The BSP copied over `bsp_copy` (kept between builds so scons rebuilds only what changed), then adapted;
    `cflags` are added to every compile (e.g. the soft KPU's rounding switch)."""
    source = find_bsp(root, target.bsp)
    if target.needs_k210_sdk:
        find_k210_sdk(source)
    shutil.copytree(source, bsp_copy, dirs_exist_ok=True, ignore=_build_outputs(source))
    for path in bsp_copy.rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)  # the tree may be read-only (CI); its copy is ours
    rtconfig = bsp_copy / "rtconfig.py"
    if toolchain.picolibc:
        compat = bsp_copy / PORT_FOLDER / "compat"
        rtconfig.write_text(rtconfig.read_text() + picolibc_rtconfig(target, toolchain, compat))
        if target.needs_k210_sdk:
            _drop_sdk_cplusplus(bsp_copy / "packages" / "K210-SDK-latest" / "SConscript")
    if cflags:
        switches = " " + " ".join(cflags)
        rtconfig.write_text(rtconfig.read_text() + f"\nCFLAGS += {switches!r}  # face-k210 build switches\n")
    _edit_rtconfig_h(bsp_copy / "rtconfig.h", k210=target.needs_k210_sdk, no_cplusplus=toolchain.picolibc)
    _source_kconfig(bsp_copy / "Kconfig")


def use_rt_ai_runtime(runtime: str, source_bsp: Path, bsp_copy: Path, rtak_lib: str | Path | None) -> None:
    """Our rt_ai (in face_ai/rt_ai) or RT-AK's rt_ai_lib in <bsp>/rt_ai_lib, never both: their rt_ai_* clash."""
    if runtime not in RT_AI_RUNTIMES:
        raise PipelineError(f"got {runtime!r}", field="firmware.rt_ai", expected=" or ".join(RT_AI_RUNTIMES))
    if runtime == "ours":
        if (source_bsp / RTAK_LIB_FOLDER).is_dir():
            raise PipelineError("the BSP holds RT-AK's rt_ai_lib, whose rt_ai_* functions clash with ours",
                                path=source_bsp / RTAK_LIB_FOLDER, field="firmware.rt_ai",
                                expected="rtak (build the models on RT-AK's runtime), or remove that folder")
        return
    lib = find_rtak_lib(rtak_lib, source_bsp)
    shutil.copytree(lib, bsp_copy / RTAK_LIB_FOLDER)
    for ours in ("rt_ai.c", "rt_ai.h"):
        (bsp_copy / COMPONENT / "rt_ai" / ours).unlink()
    rtconfig_h = bsp_copy / "rtconfig.h"
    rtconfig_h.write_text("\n".join(_before_last_endif(rtconfig_h.read_text().splitlines(), [RTAK_ENABLE_LINE])) + "\n")


def run_scons(bsp_copy: Path, root: Path, toolchain: Toolchain, jobs: int) -> str:
    env = dict(os.environ, RTT_ROOT=str(root), RTT_EXEC_PATH=str(toolchain.exec_path), RTT_CC="gcc")
    try:
        proc = subprocess.run(["scons", f"-j{jobs}"], cwd=bsp_copy, env=env, capture_output=True, text=True,
                              timeout=SCONS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"scons did not finish within {SCONS_TIMEOUT_S} s", path=bsp_copy) from None
    log = proc.stdout + proc.stderr
    (bsp_copy / "scons.log").write_text(log)
    if proc.returncode != 0 or not (bsp_copy / "rtthread.bin").is_file():
        errors = [line for line in log.splitlines() if re.search(r"error|undefined reference|multiple definition",
                                                                 line, re.IGNORECASE)]
        shown = "\n".join(errors[:40]) or log[-3000:]
        raise PipelineError(f"scons failed in {bsp_copy} (exit {proc.returncode}; full log in scons.log):\n{shown}")
    return log


def build_rtthread(target: BspTarget, renders: list[Path], out: Path, work: Path, *,
                   rtt_root: str | Path | None = None, generated: dict[str, str] | None = None,
                   embedded_kmodels: dict[str, Path] | None = None, cflags: tuple[str, ...] = (),
                   rt_ai: str = "ours", rtak_lib: str | Path | None = None, jobs: int = 2,
                   apps: tuple[Path, ...] = (), app_commands: tuple[str, ...] = ()) -> RtthreadBuild:
    """Build `renders` (rendered folders, one model each) and application folders `apps` into target's BSP copied to
    `work`; the image goes to `out` (atomically) only after check_image found every model's command, registration
    and kmodel, and every one of `app_commands`, in it."""
    if shutil.which("scons") is None:
        raise PipelineError("scons not found on PATH", expected="the package scons (run `invoke setup`)")
    root = find_rtt_root(rtt_root)
    toolchain = find_toolchain(target.bsp_prefix)
    work.mkdir(parents=True, exist_ok=True)
    prepare_bsp_copy(target, root, toolchain, work, cflags)
    names = install_component(renders, work, apps)
    shutil.rmtree(work / RTAK_LIB_FOLDER, ignore_errors=True)
    use_rt_ai_runtime(rt_ai, find_bsp(root, target.bsp), work, rtak_lib)
    install_port(target, toolchain, work, generated or {})
    for stale in ("rtthread.elf", "rtthread.bin", "rtthread.map"):
        (work / stale).unlink(missing_ok=True)
    run_scons(work, root, toolchain, jobs)
    commands = {name: app_command(name, rendered_kind(work / COMPONENT / name)) for name in names}
    report = check_image(work / "rtthread.elf", work / "rtthread.map", toolchain.tool("size"), commands,
                         embedded_kmodels or {}, app_commands)
    with atomic_folder(Path(out)) as tmp:
        for name in ("rtthread.elf", "rtthread.bin", "rtthread.map"):
            shutil.copy2(work / name, tmp / name)
    return RtthreadBuild(board=target.board, folder=Path(out), image=Path(out) / "rtthread.bin",
                         toolchain=toolchain, rtt_root=root, report=report)


def build_board(board: str, renders: list[Path], out: Path, work: Path, *, rtt_root: str | Path | None = None,
                camera: str = "ov5640", rounding: str = "reference", kernel: str = "fast", rt_ai: str = "ours",
                rtak_lib: str | Path | None = None, embedded_kmodels: dict[str, Path] | None = None,
                apps: tuple[Path, ...] = (), app_commands: tuple[str, ...] = ()) -> RtthreadBuild:
    """build_rtthread for the qemu or k210 board with what that board's port needs: the generated memory map (qemu,
    whose kernel must end below it) or the K210 board header (camera), and the soft KPU's rounding and kernel."""
    target = BSP_TARGETS[board]
    generated = {"memory_map.h": memory_map_header()} if board == "qemu" else \
        {"k210_board.h": k210_board_header(camera)}
    result = build_rtthread(target, renders, out, work, rtt_root=rtt_root, generated=generated,
                            embedded_kmodels=embedded_kmodels, cflags=rounding_flags(rounding, kernel), rt_ai=rt_ai,
                            rtak_lib=rtak_lib, apps=apps, app_commands=app_commands)
    if board == "qemu":
        check_kernel_fits(result.report.bss_end)
    return result
