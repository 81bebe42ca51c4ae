"""Find what an RT-Thread build needs and say what to install when it is missing: the RT-Thread tree (4.1.1 or
newer), its BSP, the K210 SDK package for bsp/k210, and a RISC-V toolchain (the one the BSP names, or Debian's
riscv64-unknown-elf-gcc with picolibc, which the build copy is adapted to)."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import REPO_ROOT
from pipeline.errors import PipelineError

SHARED_RTT_ROOT = REPO_ROOT.parent / "shared" / "rtthread" / "rt-thread"
SHARED_RTAK_LIB = REPO_ROOT.parent / "shared" / "rtthread" / "RT-AK" / "RT-AK" / "rt_ai_lib"
RTAK_LIB_FOLDER = "rt_ai_lib"  # where RT-AK's tool puts its runtime in a BSP
RTT_MIN_VERSION = (4, 1, 1)  # bsp/k210 uses the K210-SDK package (PKG_USING_K210_SDK) since 4.1.1
K210_SDK_PACKAGE = "K210-SDK-latest"
LEGACY_SDK_GLOB = "kendryte*sdk*"
DEBIAN_PREFIX = "riscv64-unknown-elf-"
DEBIAN_PICOLIBC_SPECS = Path("/usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs")
DEBIAN_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"


@dataclass(frozen=True)
class Toolchain:
    """A RISC-V GCC for the BSP: its bin folder, prefix, and whether it is Debian's picolibc one (which the build
    copy's rtconfig.py is adapted to) or the one the BSP names (used as the BSP expects it)."""

    exec_path: Path
    prefix: str
    picolibc: bool

    def tool(self, name: str) -> str:
        return str(self.exec_path / f"{self.prefix}{name}")

    def describe(self) -> str:
        kind = "Debian's, with picolibc; build copy adapted" if self.picolibc else "the BSP's own"
        return f"{self.exec_path / self.prefix}gcc ({kind})"


def find_rtt_root(rtt_root: str | Path | None) -> Path:
    """--rtt-root, else $RTT_ROOT, else the RT-Thread tree in ../shared/rtthread (present in CI)."""
    given = rtt_root or os.environ.get("RTT_ROOT")
    root = Path(given).expanduser() if given else SHARED_RTT_ROOT
    if not given and not root.is_dir():
        raise PipelineError("no RT-Thread tree given", field="--rtt-root",
                            expected="--rtt-root or $RTT_ROOT pointing at a clone of RT-Thread (4.1.1 or newer), "
                                     "e.g. git clone https://github.com/RT-Thread/rt-thread")
    rtdef = root / "include" / "rtdef.h"
    if not rtdef.is_file():
        raise PipelineError("not an RT-Thread tree", path=root, field="--rtt-root / $RTT_ROOT",
                            expected="include/rtdef.h (a clone of RT-Thread, 4.1.1 or newer)")
    version = rtthread_version(rtdef)
    if version < RTT_MIN_VERSION:
        raise PipelineError(f"RT-Thread {'.'.join(map(str, version))} is too old", path=rtdef,
                            expected=f"RT-Thread {'.'.join(map(str, RTT_MIN_VERSION))} or newer (bsp/k210 with the "
                                     "K210-SDK package)")
    return root


def rtthread_version(rtdef: Path) -> tuple[int, int, int]:
    """(major, minor, patch) from include/rtdef.h (RT_VERSION_MAJOR/MINOR/PATCH, or the older RT_VERSION/
    RT_SUBVERSION/RT_REVISION)."""
    text = rtdef.read_text(errors="replace")

    def number(*names: str) -> int:
        for name in names:
            found = re.search(rf"^#define\s+{name}\s+(\d+)", text, re.MULTILINE)
            if found:
                return int(found.group(1))
        raise PipelineError(f"no {names[0]} in the RT-Thread version header", path=rtdef,
                            expected="an RT-Thread tree's include/rtdef.h")

    return (number("RT_VERSION_MAJOR", "RT_VERSION"), number("RT_VERSION_MINOR", "RT_SUBVERSION"),
            number("RT_VERSION_PATCH", "RT_REVISION"))


def find_bsp(root: Path, bsp: str) -> Path:
    folder = root / "bsp" / bsp
    if not (folder / "SConstruct").is_file() or not (folder / "rtconfig.py").is_file() \
            or not (folder / "rtconfig.h").is_file():
        raise PipelineError(f"the RT-Thread tree has no bsp/{bsp}", path=folder,
                            expected="SConstruct, rtconfig.py and rtconfig.h (a full RT-Thread clone)")
    return folder


def find_k210_sdk(bsp: Path) -> Path:
    """packages/K210-SDK-latest: what `pkgs --update` fetches for bsp/k210 (PKG_USING_K210_SDK, selected by
    SOC_K210)."""
    packages = bsp / "packages"
    sdk = packages / K210_SDK_PACKAGE
    if (sdk / "SConscript").is_file():
        return sdk
    legacy = sorted(packages.glob(LEGACY_SDK_GLOB)) if packages.is_dir() else []
    found = f"only the legacy package {legacy[0].name} (PKG_USING_KENDRYTE_SDK, which clashes with the BSP)" \
        if legacy else "no K210 SDK package"
    raise PipelineError(f"{found} in the BSP", path=packages,
                        expected=f"packages/{K210_SDK_PACKAGE}: in bsp/k210 run `pkgs --update` (RT-Thread Env; "
                                 "PKG_USING_K210_SDK is selected by SOC_K210 in menuconfig)")


def _has_newlib(exec_path: Path, prefix: str) -> bool:
    """Whether a toolchain carries newlib, where RT-Thread's tools/gcc.py looks for it."""
    triple = prefix.rstrip("-")
    root = Path("/usr/lib") / triple if exec_path == Path("/usr/bin") else exec_path.parent / triple
    return (root / "include" / "newlib.h").is_file() or (root / "include" / "_newlib_version.h").is_file()


def find_toolchain(bsp_prefix: str) -> Toolchain:
    """The BSP's own toolchain ($RTT_EXEC_PATH, else PATH), else Debian's riscv64-unknown-elf-gcc with picolibc."""
    exec_path = os.environ.get("RTT_EXEC_PATH")
    candidates = [Path(exec_path) / f"{bsp_prefix}gcc"] if exec_path else []
    candidates += [Path(found) for found in (shutil.which(f"{bsp_prefix}gcc"), shutil.which(f"{DEBIAN_PREFIX}gcc"))
                   if found]
    for gcc in candidates:
        if not gcc.is_file():
            continue
        prefix = gcc.name[:-len("gcc")]
        picolibc = prefix == DEBIAN_PREFIX and not _has_newlib(gcc.parent, prefix)
        if not picolibc or DEBIAN_PICOLIBC_SPECS.is_file():
            return Toolchain(gcc.parent, prefix, picolibc=picolibc)
    where = f"$RTT_EXEC_PATH={exec_path} has no {bsp_prefix}gcc" if exec_path else \
        f"$RTT_EXEC_PATH is not set and neither {bsp_prefix}gcc nor {DEBIAN_PREFIX}gcc with picolibc is installed"
    raise PipelineError(where, field="RTT_EXEC_PATH",
                        expected=f"the BSP's toolchain ({bsp_prefix}gcc; for bsp/k210 the xPack riscv-none-embed-gcc "
                                 f"8.3.0-1.2) with RTT_EXEC_PATH set to its bin folder, or the Debian packages "
                                 f"{DEBIAN_PACKAGES} (run `invoke setup`)")


def find_rtak_lib(given: str | Path | None, bsp: Path) -> Path:
    """RT-AK's rt_ai_lib for firmware.rt_ai: rtak: the one in the BSP (where RT-AK's tool put it), else
    firmware.rtak_lib, else $RTAK_LIB, else ../shared/rtthread/RT-AK/RT-AK/rt_ai_lib."""
    chosen = given or os.environ.get("RTAK_LIB")
    candidates = [bsp / RTAK_LIB_FOLDER] + ([Path(chosen).expanduser()] if chosen else [SHARED_RTAK_LIB])
    for folder in candidates:
        if (folder / "rt_ai.c").is_file() and (folder / "include" / "rt_ai.h").is_file():
            return folder
    raise PipelineError("RT-AK's rt_ai_lib not found", path=candidates[-1], field="firmware.rtak_lib",
                        expected="a folder with rt_ai.c and include/rt_ai.h (RT-AK/rt_ai_lib of "
                                 "https://github.com/RT-Thread/RT-AK), or firmware.rt_ai: ours")
