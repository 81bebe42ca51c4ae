"""Run built firmware: the host executable directly; the RT-Thread image on qemu-system-riscv64 -M virt, booted as
its BSP boots (OpenSBI, then the kernel in S-mode), with the kmodel (or a whole flash image) and the frames placed in
memory by QEMU's loader device, and the app's msh command typed at the console."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deploy.firmware import memory_map as mm
from deploy.firmware.console import ConsoleResult, parse_console
from deploy.firmware.msh_console import MshConsole
from deploy.isp.image import read_flash_firmware
from pipeline.errors import PipelineError

QEMU = "qemu-system-riscv64"


def _finish(proc: subprocess.CompletedProcess, what: str) -> ConsoleResult:
    if proc.returncode != 0:
        tail = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
        raise PipelineError(f"{what} exited with status {proc.returncode}:\n{tail}")
    return parse_console(proc.stdout, source=what)


def _timed_run(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"{what} did not finish within {timeout:.0f} s", expected="a shorter run or a larger "
                            "timeout") from None


def run_host(program: Path, frames: list[Path], *, flash_files: dict[int, Path], dump: bool = False,
             args: list[str] | None = None, timeout: float = 300.0, storage: Path | None = None,
             commands: list[str] | None = None) -> ConsoleResult:
    """Run the host executable on PPM frames; flash_files maps flash offsets to files (e.g. 0x300000: kmodel);
    `args` follow the app's msh command as typed at the console; `storage` is the flash image file the board port
    keeps its persistent store in; `commands` are typed one after another instead of the app's command."""
    cmd = [str(program)] + (["--storage", str(storage)] if storage is not None else [])
    for offset, path in sorted(flash_files.items()):
        cmd += ["--flash-file", hex(offset), str(path)]
    cmd += ["--dump"] if dump else []
    cmd += ["--args", " ".join(args)] if args else []
    for line in commands or []:
        cmd += ["--command", line]
    return _finish(_timed_run(cmd + [str(f) for f in frames], timeout, "host firmware"), "host firmware")


def _flash_placements(flash_files: dict[int, Path], flash_image: Path | None) -> tuple[list[mm.Placement],
                                                                                       list[tuple[int, int]]]:
    if flash_image is not None:
        size = Path(flash_image).stat().st_size
        if size > mm.FLASH_SIZE:
            raise PipelineError(f"flash image is {size} bytes", path=flash_image, expected=f"<= {mm.FLASH_SIZE}")
        return [mm.Placement(Path(flash_image), mm.FLASH_BASE)], [(0, size)]
    placements, regions = [], []
    for offset, path in sorted(flash_files.items()):
        size = Path(path).stat().st_size
        if offset + size > mm.FLASH_SIZE:
            raise PipelineError(f"{size} bytes at flash offset {offset:#x} pass the end of the 16 MiB flash",
                                path=path)
        placements.append(mm.Placement(Path(path), mm.FLASH_BASE + offset))
        regions.append((offset, size))
    return placements, regions


def qemu_command(kernel: Path, placements: list[mm.Placement], *, count_instructions: bool,
                 storage: Path | None = None) -> list[str]:
    """qemu-system-riscv64 on the virt machine with its default OpenSBI, the kernel as -kernel (as the BSP's
    qemu-nographic.sh boots it), the UART on stdio, every file placed by the loader device, and `storage` (a 16 MiB
    flash image) as the virtio block device the board port writes its persistent store to (as the BSP's script
    attaches sd.bin), so what the firmware saves is in that file after QEMU exits."""
    cmd = [QEMU, "-M", "virt", "-m", f"{mm.QEMU_RAM_MIB}M", "-smp", "1", "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-kernel", str(kernel)]
    if count_instructions:
        cmd += ["-icount", "shift=0"]
    for p in placements:
        cmd += ["-device", f"loader,file={p.path},addr={p.address:#x},force-raw=on"]
    if storage is not None:
        cmd += ["-drive", f"if=none,file={storage},format=raw,id=flash0,cache=writethrough",
                "-device", "virtio-blk-device,drive=flash0,bus=virtio-mmio-bus.0"]
    return cmd


@contextlib.contextmanager
def qemu_console(image: Path, frames: list[Path], *, flash_files: dict[int, Path] | None = None,
                 flash_image: Path | None = None, dump: bool = False, count_instructions: bool = False,
                 storage: Path | None = None) -> Iterator[MshConsole]:
    """QEMU booted to the msh prompt with the flash contents, the frames and the boot-info block placed in memory
    and `storage` as its persistent store; killed when the block ends (as a power cut would stop a board)."""
    if shutil.which(QEMU) is None:
        raise PipelineError(f"{QEMU} not found on PATH", expected="the package qemu-system-misc (run `invoke setup`)")
    placements, regions = _flash_placements(flash_files or {}, flash_image)
    addresses = mm.frame_addresses([Path(f).stat().st_size for f in frames])
    placements += [mm.Placement(Path(f), a) for f, a in zip(frames, addresses, strict=True)]
    info = mm.boot_info_bytes(flash_regions=regions,
                              frames=[(a, Path(f).stat().st_size) for f, a in zip(frames, addresses, strict=True)],
                              dump=dump, count_instructions=count_instructions)
    with tempfile.TemporaryDirectory(prefix="qemu_boot_") as tmp:
        boot = Path(tmp) / "boot_info.bin"
        boot.write_bytes(info)
        cmd = qemu_command(Path(image), placements + [mm.Placement(boot, mm.BOOT_INFO_ADDR)],
                           count_instructions=count_instructions, storage=storage)
        with MshConsole(cmd, what="QEMU firmware") as console:
            yield console


def run_qemu(image: Path, frames: list[Path], *, command: str, flash_files: dict[int, Path] | None = None,
             flash_image: Path | None = None, dump: bool = False, count_instructions: bool = False,
             timeout: float = 300.0, storage: Path | None = None) -> ConsoleResult:
    """Boot rtthread.bin with the model in the flash window (single files at their flash offsets, or a whole
    16 MiB flash image as the simulated K210 board writes it) and the frames after it, `storage` as its persistent
    store; at the msh prompt, type `command` and collect its JSON lines."""
    with qemu_console(image, frames, flash_files=flash_files, flash_image=flash_image, dump=dump,
                      count_instructions=count_instructions, storage=storage) as console:
        printed = console.run(command, timeout)
    result = parse_console(printed, source="QEMU firmware")
    result.boot_seconds = console.boot_seconds
    return result


def boot_flash_image(flash_image: Path, frames: list[Path], *, command: str, dump: bool = False,
                     count_instructions: bool = False, timeout: float = 300.0) -> ConsoleResult:
    """Boot like the simulated K210: the firmware image at flash 0x0 (flags, length, payload, SHA-256; what
    `invoke flash` writes) is verified and loaded at 0x80000000, the whole flash is mapped so the firmware finds its
    kmodel at the model address, and the same flash image is its persistent store (what it saves stays there)."""
    firmware = read_flash_firmware(Path(flash_image))
    with tempfile.TemporaryDirectory(prefix="flash_boot_") as tmp:
        image = Path(tmp) / "firmware.bin"
        image.write_bytes(firmware.payload)
        return run_qemu(image, frames, command=command, flash_image=flash_image, dump=dump,
                        count_instructions=count_instructions, timeout=timeout, storage=Path(flash_image))
