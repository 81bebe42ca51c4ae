"""The system tools the firmware and board stages need, and their installation through apt when missing."""

from __future__ import annotations

import os
import shutil
import subprocess

from pipeline.errors import PipelineError

# command on PATH (or file) -> Debian package that provides it
SYSTEM_TOOLS: dict[str, str] = {
    "gcc": "gcc",
    "riscv64-unknown-elf-gcc": "gcc-riscv64-unknown-elf",
    "/usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs": "picolibc-riscv64-unknown-elf",
    "qemu-system-riscv64": "qemu-system-misc",
    "scons": "scons",
}


def _present(tool: str) -> bool:
    return os.path.exists(tool) if tool.startswith("/") else shutil.which(tool) is not None


def missing_packages() -> list[str]:
    return sorted({pkg for tool, pkg in SYSTEM_TOOLS.items() if not _present(tool)})


def ensure_system_tools(install: bool = True) -> None:
    """Install missing Debian packages (needs root and apt-get); report what is missing otherwise."""
    missing = missing_packages()
    if not missing:
        print("setup: all system tools present: " + ", ".join(sorted(SYSTEM_TOOLS.values())))
        return
    if not install:
        raise PipelineError("missing system packages: " + " ".join(missing),
                            expected="run `invoke setup` (apt-get install as root)")
    apt = shutil.which("apt-get")
    if apt is None:
        raise PipelineError("apt-get not found; install these packages with your system's package manager: "
                            + " ".join(missing))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("setup: installing " + " ".join(missing))
    subprocess.run(sudo + [apt, "update"], check=True, env=env)
    subprocess.run(sudo + [apt, "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    still = missing_packages()
    if still:
        raise PipelineError("packages still missing after apt-get install: " + " ".join(still))
    print("setup: installed " + " ".join(missing))
