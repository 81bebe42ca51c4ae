"""Conformance: the upstream kflash tool (PyPI) flashes the simulated board, and the flash image it leaves is
byte-identical to the one our flasher leaves for the same package (spec §8.3 item 9, the oracle check)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.isp.flasher import flash_artifacts
from deploy.isp.image import firmware_image
from deploy.isp.kfpkg import FlashEntry, write_kfpkg
from deploy.isp.simboard.options import SimOptions
from deploy.isp.simboard.process import running_simboard
from deploy.isp.upstream_kflash import kflash_available, run_kflash
from tests.conftest import assert_flash_holds

pytestmark = pytest.mark.skipif(not kflash_available(), reason="kflash (PyPI) is not installed (requirements.txt)")


def test_upstream_kflash_flashes_the_simulated_board(tmp_path: Path) -> None:
    firmware, kmodel = os.urandom(40_000), os.urandom(12_345)
    package = tmp_path / "app.kfpkg"
    write_kfpkg(package, [FlashEntry("app.bin", 0, firmware, True), FlashEntry("m.kmodel", 0x300000, kmodel, False)])
    sim = SimOptions(idle_timeout_s=60, page_program_s=0.0, sector_erase_s=0.0, block_erase_s=0.0)
    upstream_flash = tmp_path / "kflash" / "sim_flash.img"
    with running_simboard(upstream_flash, sim) as url:
        result = run_kflash(url, package, baud=1_500_000, board="dan", timeout_s=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Rebooting" in result.stdout
    expected = {0: firmware_image(firmware), 0x300000: kmodel}
    assert_flash_holds(upstream_flash, expected)

    ours = tmp_path / "ours"
    ours.mkdir()
    flash_artifacts(build_dir=ours, kfpkg=package, board="sim", board_type="dan", sim_options=sim,
                    say=lambda _line: None, show_progress=False)
    assert (ours / "sim_flash.img").read_bytes() == upstream_flash.read_bytes()
