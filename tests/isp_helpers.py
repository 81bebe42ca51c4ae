"""Shared pieces of the flasher tests: fast timing, dummy flash-stage programs, and checks on a flash image."""

from __future__ import annotations

import os
from pathlib import Path

from deploy.isp.flasher import FlashSummary, flash_artifacts
from deploy.isp.image import FLASH_SIZE
from deploy.isp.link import Timing
from deploy.isp.simboard.options import SimOptions

FAST_TIMING = Timing(reply_base_s=0.01, program_s_per_64k=0.05, greeting_s=0.15, boot_wait_s=0.0,
                     busy_backoff_s=0.005, baud_settle_s=0.0, greeting_rounds=3)
FAST_SIM = SimOptions(idle_timeout_s=30).fast()


def dummy_program(folder: Path, size: int = 1500) -> Path:
    """A random stand-in for the flash-stage program (the simulated board accepts any bytes)."""
    path = folder / "dummy_stub.bin"
    path.write_bytes(os.urandom(size))
    return path


def flash_sim(build_dir: Path, *, sim: SimOptions = FAST_SIM, dialect: str = "vowstar", baud: int = 1_500_000,
              board_type: str = "generic", stub_size: int = 1500, **artifacts: Path) -> FlashSummary:
    build_dir.mkdir(parents=True, exist_ok=True)
    return flash_artifacts(build_dir=build_dir, board="sim", board_type=board_type, baud=baud,
                           isp_prog=dummy_program(build_dir, stub_size), stub_dialect=dialect, sim_options=sim,
                           timing=FAST_TIMING, say=lambda _line: None, show_progress=False, **artifacts)


def assert_flash_holds(flash_image: Path, expected: dict[int, bytes]) -> None:
    """Every expected range holds exactly its bytes and every other byte of the 16 MiB is still erased (0xFF)."""
    flash = flash_image.read_bytes()
    assert len(flash) == FLASH_SIZE
    reference = bytearray(b"\xff" * FLASH_SIZE)
    for address, data in expected.items():
        assert flash[address:address + len(data)] == data, f"bytes differ at 0x{address:X}"
        reference[address:address + len(data)] = data
    assert flash == bytes(reference), "bytes outside the written ranges changed"
