"""The boards users name with --board (host, qemu, sim, k210) and the build targets behind them: the host shim
(a native executable) and the RT-Thread BSPs, with their compilers, flags and port sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
PORT_DIR = FIRMWARE_DIR / "port"
COMMON_CFLAGS = ("-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
ROUNDINGS = {"reference": (), "v0.1": ("-DKPU_ROUNDING_V01",)}
KPU_KERNELS = {"fast": (), "reference": ("-DKPU_REFERENCE_KERNEL",)}  # firmware/runtime/kpu_soft.c or kpu_ref.c


@dataclass(frozen=True)
class Board:
    """The host target: the rendered folder plus the RT-Thread API shim and the host port under firmware/port."""

    name: str
    cc: str
    size_tool: str
    apt_packages: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    port: str

    def port_sources(self) -> list[Path]:
        folders = (PORT_DIR / "common", PORT_DIR / self.port)
        return sorted(p for d in folders for p in d.iterdir() if p.suffix == ".c")

    def include_dirs(self) -> list[Path]:
        return [PORT_DIR, PORT_DIR / "common", PORT_DIR / self.port]


@dataclass(frozen=True)
class BspTarget:
    """A board built on real RT-Thread: the BSP folder under bsp/, the toolchain prefix its rtconfig.py names, the
    board port (firmware/port/<port>), the flag changes Debian's riscv64-unknown-elf multilib set needs, and whether
    it builds against the K210 SDK package (and so runs the models on the KPU)."""

    board: str
    bsp: str
    bsp_prefix: str
    port: str
    debian_flag_fixes: tuple[tuple[str, str], ...]
    needs_k210_sdk: bool
    apt_packages: tuple[str, ...]


HOST = Board(name="host", cc="gcc", size_tool="size", apt_packages=("gcc",),
             # -march=native: the host build runs where it is built; -ffp-contract=off keeps float results unfused
             cflags=COMMON_CFLAGS + ("-march=native",), ldflags=("-lm",), port="host")
RISCV_PACKAGES = ("gcc-riscv64-unknown-elf", "picolibc-riscv64-unknown-elf", "scons")
BSP_TARGETS: dict[str, BspTarget] = {
    # bsp/qemu-virt64-riscv asks for -mabi=lp64 with rv64imafdc, a pair Debian's multilib set lacks: lp64d
    "qemu": BspTarget(board="qemu", bsp="qemu-virt64-riscv", bsp_prefix="riscv64-unknown-elf-", port="rtt_qemu",
                      debian_flag_fixes=(("-mabi=lp64 ", "-mabi=lp64d "),), needs_k210_sdk=False,
                      apt_packages=(*RISCV_PACKAGES, "qemu-system-misc")),
    "k210": BspTarget(board="k210", bsp="k210", bsp_prefix="riscv-none-embed-", port="k210", debian_flag_fixes=(),
                      needs_k210_sdk=True, apt_packages=RISCV_PACKAGES),
}
BUILD_TARGETS = ("host", *BSP_TARGETS)


def check_build_target(name: str) -> str:
    if name not in BUILD_TARGETS:
        raise PipelineError(f"unknown board {name!r}", field="--board", expected=" or ".join(BUILD_TARGETS))
    return name


def rounding_flags(rounding: str, kernel: str = "fast") -> tuple[str, ...]:
    """The compile flags of the soft KPU: its activation rounding and which kernel runs the convolutions."""
    if rounding not in ROUNDINGS:
        raise PipelineError(f"got {rounding!r}", field="firmware.rounding", expected=" or ".join(ROUNDINGS))
    if kernel not in KPU_KERNELS:
        raise PipelineError(f"got {kernel!r}", field="firmware.kpu_kernel", expected=" or ".join(KPU_KERNELS))
    return ROUNDINGS[rounding] + KPU_KERNELS[kernel]


# how a board runs here: the host executable, the QEMU RT-Thread image, or the simulated K210 booting the firmware
# that `invoke flash` wrote into its flash image (deploy/firmware/run.py: run_host, run_qemu, boot_flash_image)
HOST_RUNNER, QEMU_RUNNER, FLASH_IMAGE_RUNNER = "host", "qemu", "flash_image"


@dataclass(frozen=True)
class BoardSpec:
    """A board of --board: the build target it builds, where it keeps the kmodel (None: as
    firmware.kmodel_storage says), how `invoke flash` reaches its ISP (deploy/isp/transports.py: "serial", the
    simulated board, or None: not flashed), and how `invoke run` drives it on this machine (a *_RUNNER value; None:
    it does not run here)."""

    name: str
    build_target: str
    kmodel_storage: str | None
    flash_transport: str | None
    runner: str | None

    @property
    def runs_here(self) -> bool:
        return self.runner is not None

    @property
    def flashed(self) -> bool:
        return self.flash_transport is not None


BOARDS: dict[str, BoardSpec] = {
    "host": BoardSpec("host", build_target="host", kmodel_storage=None, flash_transport=None, runner=HOST_RUNNER),
    "qemu": BoardSpec("qemu", build_target="qemu", kmodel_storage=None, flash_transport=None, runner=QEMU_RUNNER),
    # the simulated K210 keeps the kmodel in flash at deploy.kmodel_address (as MaixPy's kpu.load_flash does)
    "sim": BoardSpec("sim", build_target="qemu", kmodel_storage="flash", flash_transport="simulated",
                     runner=FLASH_IMAGE_RUNNER),
    # the real board links it into the firmware
    "k210": BoardSpec("k210", build_target="k210", kmodel_storage="embedded", flash_transport="serial",
                      runner=None),
}


def flashed_board(name: str) -> BoardSpec:
    """The registry's record of a board `invoke flash` writes, else an error naming the ones it can."""
    spec = board_spec(name)
    if not spec.flashed:
        flashed = [board for board, record in BOARDS.items() if record.flashed]
        raise PipelineError(f"board {name!r} is not flashed over the ISP", field="--board",
                            expected=" or ".join(flashed))
    return spec


def board_spec(name: str) -> BoardSpec:
    if name not in BOARDS:
        raise PipelineError(f"unknown board {name!r}", field="--board", expected=" | ".join(BOARDS))
    return BOARDS[name]
