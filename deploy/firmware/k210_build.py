"""Build for the real K210 board: drop the rendered folder into an RT-Thread tree's bsp/k210/applications and run
scons with the RISC-V toolchain bsp/k210 expects; every missing piece is reported with what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deploy.firmware.atomic_folder import atomic_folder
from deploy.firmware.build import rendered_model_name
from deploy.firmware.k210_headers import write_k210_headers
from pipeline.errors import PipelineError

K210_TOOLCHAIN_GCC = "riscv-none-embed-gcc"  # bsp/k210/rtconfig.py hard-codes this prefix
ENABLE_LINE = "#define RT_AI_USE_K210"
SCONS_TIMEOUT_S = 1800


def find_bsp(rtt_root: str | Path | None) -> Path:
    """bsp/k210 of the tree named by --rtt-root or $RTT_ROOT."""
    root = rtt_root or os.environ.get("RTT_ROOT")
    if not root:
        raise PipelineError("no RT-Thread tree given", field="--rtt-root",
                            expected="--rtt-root or $RTT_ROOT pointing at a clone of "
                                     "https://github.com/RT-Thread/rt-thread")
    bsp = Path(root).expanduser() / "bsp" / "k210"
    if not (bsp / "SConstruct").is_file() or not (bsp / "rtconfig.py").is_file():
        raise PipelineError("not an RT-Thread tree with the K210 BSP", path=bsp,
                            expected="bsp/k210/SConstruct and rtconfig.py (clone RT-Thread/rt-thread)")
    return bsp


def find_toolchain() -> Path:
    """The folder holding riscv-none-embed-gcc: $RTT_EXEC_PATH, else PATH."""
    exec_path = os.environ.get("RTT_EXEC_PATH")
    if exec_path and (Path(exec_path) / K210_TOOLCHAIN_GCC).is_file():
        return Path(exec_path)
    found = shutil.which(K210_TOOLCHAIN_GCC)
    if found:
        return Path(found).parent
    where = f"$RTT_EXEC_PATH={exec_path} has no {K210_TOOLCHAIN_GCC}" if exec_path else \
        f"{K210_TOOLCHAIN_GCC} is not on PATH and $RTT_EXEC_PATH is not set"
    raise PipelineError(where, field="RTT_EXEC_PATH",
                        expected="the xPack riscv-none-embed-gcc toolchain (8.3.0-1.2 or 10.2.0-1.2, as bsp/k210's "
                                 "README advises); set RTT_EXEC_PATH to its bin folder")


def find_sdk_package(bsp: Path) -> Path:
    found = sorted((bsp / "packages").glob("kendryte*sdk*")) if (bsp / "packages").is_dir() else []
    if not found:
        raise PipelineError("the Kendryte SDK package is missing", path=bsp / "packages",
                            expected="packages/kendryte-sdk-*: enable PKG_USING_KENDRYTE_SDK in menuconfig and run "
                                     "`pkgs --update` in bsp/k210 (RT-Thread Env)")
    return found[0]


def enable_backend(rtconfig_h: Path) -> None:
    """Add `#define RT_AI_USE_K210` before the final #endif of rtconfig.h (once)."""
    if not rtconfig_h.is_file():
        raise PipelineError("rtconfig.h not found", path=rtconfig_h,
                            expected="run `scons --menuconfig` once in bsp/k210")
    lines = rtconfig_h.read_text().splitlines()
    if ENABLE_LINE in (line.strip() for line in lines):
        return
    last_endif = max((i for i, line in enumerate(lines) if line.strip().startswith("#endif")), default=len(lines))
    lines.insert(last_endif, ENABLE_LINE)
    rtconfig_h.write_text("\n".join(lines) + "\n")


def build_k210(rendered: Path, out: Path, *, rtt_root: str | Path | None = None, jobs: int = 2) -> Path:
    """Copy the rendered folder into bsp/k210/applications/<name>, run scons, return out/rtthread.bin."""
    bsp = find_bsp(rtt_root)
    if shutil.which("scons") is None:
        raise PipelineError("scons not found on PATH", expected="the package scons (apt-get install scons)")
    exec_path = find_toolchain()
    find_sdk_package(bsp)
    name = rendered_model_name(rendered)
    if not (Path(rendered) / f"{name}_kmodel.c").is_file():
        raise PipelineError("the K210 build needs the kmodel embedded in the firmware", path=rendered,
                            field="firmware.kmodel_storage", expected="embedded (re-run `invoke render`)")
    target = bsp / "applications" / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(rendered, target)
    write_k210_headers(target / "runtime")  # the generated K210 headers, on the SConscript's CPPPATH
    enable_backend(bsp / "rtconfig.h")
    env = dict(os.environ, RTT_EXEC_PATH=str(exec_path), RTT_ROOT=str(bsp.parents[1]))
    proc = subprocess.run(["scons", f"-j{jobs}"], cwd=bsp, env=env, capture_output=True, text=True,
                          timeout=SCONS_TIMEOUT_S)
    if proc.returncode != 0 or not (bsp / "rtthread.bin").is_file():
        raise PipelineError(f"scons failed in {bsp} (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    with atomic_folder(Path(out)) as tmp:
        shutil.copy2(bsp / "rtthread.bin", tmp / "rtthread.bin")
        if (bsp / "rtthread.elf").is_file():
            shutil.copy2(bsp / "rtthread.elf", tmp / "rtthread.elf")
    return Path(out) / "rtthread.bin"
