"""The build targets: compiler, flags and port sources of each board the firmware can be built for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
PORT_DIR = FIRMWARE_DIR / "port"
COMMON_CFLAGS = ("-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
ROUNDINGS = {"reference": (), "v0.1": ("-DKPU_ROUNDING_V01",)}


@dataclass(frozen=True)
class Board:
    """A target built from the rendered folder plus the port sources under firmware/port/<port>."""

    name: str
    cc: str
    size_tool: str
    objcopy: str | None
    apt_packages: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    port: str | None

    def port_sources(self) -> list[Path]:
        if self.port is None:
            return []
        folders = (PORT_DIR / "common", PORT_DIR / self.port)
        return sorted(p for d in folders for p in d.iterdir() if p.suffix in (".c", ".S"))

    def include_dirs(self) -> list[Path]:
        return [PORT_DIR, PORT_DIR / "common"] + ([PORT_DIR / self.port] if self.port else [])


BOARDS: dict[str, Board] = {
    # -march=native: the host build runs where it is built; -ffp-contract=off keeps float results unfused
    "host": Board(name="host", cc="gcc", size_tool="size", objcopy=None, apt_packages=("gcc",),
                  cflags=COMMON_CFLAGS + ("-march=native",), ldflags=("-lm",), port="host"),
    "qemu": Board(name="qemu", cc="riscv64-unknown-elf-gcc", size_tool="riscv64-unknown-elf-size",
                  objcopy="riscv64-unknown-elf-objcopy",
                  apt_packages=("gcc-riscv64-unknown-elf", "picolibc-riscv64-unknown-elf", "qemu-system-misc"),
                  cflags=COMMON_CFLAGS + ("--specs=picolibc.specs", "-march=rv64imafdc", "-mabi=lp64d",
                                          "-mcmodel=medany", "-ffunction-sections", "-fdata-sections"),
                  ldflags=("-nostartfiles", "-Wl,--gc-sections", "-lm"), port="qemu"),
}
BOARD_NAMES = (*BOARDS, "k210")


def board(name: str) -> Board:
    """The Board for host or qemu (k210 is built by its RT-Thread tree, see deploy/firmware/k210_build.py)."""
    if name not in BOARDS:
        raise PipelineError(f"unknown board {name!r}", field="--board", expected=" or ".join(BOARD_NAMES))
    return BOARDS[name]


def rounding_flags(rounding: str) -> tuple[str, ...]:
    if rounding not in ROUNDINGS:
        raise PipelineError(f"got {rounding!r}", field="firmware.rounding", expected=" or ".join(ROUNDINGS))
    return ROUNDINGS[rounding]
