"""Our flasher against the simulated board (its own process, RFC 2217 on 127.0.0.1): exact bytes at exact
addresses for a firmware image, a kmodel and a kfpkg, in every stub dialect, plus the board's edge behaviours."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.isp.flasher import flash_artifacts
from deploy.isp.image import firmware_image, read_flash_firmware, read_flash_region
from deploy.isp.kfpkg import FlashEntry, write_kfpkg
from pipeline.config import REPO_ROOT
from pipeline.errors import PipelineError
from tests.conftest import FAST_SIM, FAST_TIMING, assert_flash_holds, dummy_program, flash_sim


@pytest.fixture
def artifacts(tmp_path: Path) -> dict[str, Path | bytes]:
    firmware = os.urandom(70_000)  # crosses a 64 KiB boundary
    kmodel = os.urandom(5_000)
    font = os.urandom(3_000)
    fs = os.urandom(9_000)
    (tmp_path / "firmware.bin").write_bytes(firmware)
    (tmp_path / "model.kmodel").write_bytes(kmodel)
    write_kfpkg(tmp_path / "extra.kfpkg", [FlashEntry("font.bin", 0xA00000, font, False),
                                           FlashEntry("fs.img", 0xD00000, fs, False)])
    return {"firmware": firmware, "kmodel": kmodel, "font": font, "fs": fs, "folder": tmp_path}


def _expected(artifacts: dict, padded: bool = False) -> dict[int, bytes]:
    def pad(data: bytes) -> bytes:
        return data + b"\xff" * (-len(data) % 4096) if padded else data

    return {0: pad(firmware_image(artifacts["firmware"])), 0x300000: pad(artifacts["kmodel"]),
            0xA00000: pad(artifacts["font"]), 0xD00000: pad(artifacts["fs"])}


def _flash_all(artifacts: dict, build: Path, **options) -> object:
    folder = artifacts["folder"]
    return flash_sim(build, image=folder / "firmware.bin", kmodel=folder / "model.kmodel",
                     kfpkg=folder / "extra.kfpkg", **options)


def test_firmware_kmodel_and_kfpkg_land_exactly(artifacts: dict, tmp_path: Path) -> None:
    summary = _flash_all(artifacts, tmp_path / "build")
    flash = tmp_path / "build" / "sim_flash.img"
    assert_flash_holds(flash, _expected(artifacts))
    assert read_flash_firmware(flash).payload == artifacts["firmware"]
    assert read_flash_region(flash, 0x300000, 5_000) == artifacts["kmodel"]
    assert summary.session["baud"] == 1_500_000
    assert summary.session["verification"].startswith("unavailable")
    assert summary.session["reboot"] == "reboot command acknowledged"
    report = json.loads((tmp_path / "build" / "flash_report.json").read_text())
    assert [e["address"] for e in report["entries"]] == [0, 0x300000, 0xA00000, 0xD00000]


def test_ktool_dialect_reads_back_and_verifies(artifacts: dict, tmp_path: Path) -> None:
    sim = dataclasses.replace(FAST_SIM, personality="ktool")
    summary = _flash_all(artifacts, tmp_path / "build", sim=sim, dialect="ktool")
    assert summary.session["verification"].startswith("read back and compared")
    assert summary.session["reboot"] == "reboot command acknowledged"
    assert_flash_holds(tmp_path / "build" / "sim_flash.img", _expected(artifacts, padded=True))


def test_sipeed_dialect_pads_sectors_and_reboots_by_lines(artifacts: dict, tmp_path: Path) -> None:
    sim = dataclasses.replace(FAST_SIM, personality="sipeed")
    summary = _flash_all(artifacts, tmp_path / "build", sim=sim, dialect="sipeed")
    assert "DTR/RTS" in summary.session["reboot"]
    assert_flash_holds(tmp_path / "build" / "sim_flash.img", _expected(artifacts, padded=True))


@pytest.mark.parametrize("d6_reply", ["old", "new"])
def test_busy_replies_and_baud_reply_modes(artifacts: dict, tmp_path: Path, d6_reply: str) -> None:
    sim = dataclasses.replace(FAST_SIM, busy_replies=4, d6_reply=d6_reply)
    folder = artifacts["folder"]
    summary = flash_sim(tmp_path / "build", sim=sim, image=folder / "firmware.bin")
    assert summary.session["baud"] == 1_500_000
    assert_flash_holds(tmp_path / "build" / "sim_flash.img", {0: firmware_image(artifacts["firmware"])})


def test_auto_board_type_finds_kd233_wiring(artifacts: dict, tmp_path: Path) -> None:
    sim = dataclasses.replace(FAST_SIM, wiring="kd233")
    summary = flash_sim(tmp_path / "build", sim=sim, board_type="auto", baud=115200,
                        kmodel=artifacts["folder"] / "model.kmodel")
    assert summary.session["board_family"] == "kd233" and summary.session["baud"] == 115200
    assert_flash_holds(tmp_path / "build" / "sim_flash.img", {0x300000: artifacts["kmodel"]})


def test_wrong_board_type_fails_clearly(artifacts: dict, tmp_path: Path) -> None:
    sim = dataclasses.replace(FAST_SIM, wiring="kd233")
    with pytest.raises(PipelineError, match=r"no ROM greeting \[C2, E0\]"):
        flash_sim(tmp_path / "build", sim=sim, board_type="dan", kmodel=artifacts["folder"] / "model.kmodel")


def test_unreachable_port_and_missing_inputs(tmp_path: Path) -> None:
    (tmp_path / "m.kmodel").write_bytes(b"k" * 10)
    with pytest.raises(PipelineError, match="cannot open"):
        flash_artifacts(build_dir=tmp_path, kmodel=tmp_path / "m.kmodel", board="k210", port="rfc2217://127.0.0.1:9",
                        isp_prog=dummy_program(tmp_path), timing=FAST_TIMING, say=lambda _l: None)
    with pytest.raises(PipelineError, match="nothing to flash"):
        flash_artifacts(build_dir=tmp_path, isp_prog=dummy_program(tmp_path), say=lambda _l: None)
    with pytest.raises(PipelineError, match="not found"):
        flash_artifacts(build_dir=tmp_path, kmodel=tmp_path / "m.kmodel", isp_prog=tmp_path / "nope.bin",
                        say=lambda _l: None)
    with pytest.raises(PipelineError, match="overlaps"):
        flash_artifacts(build_dir=tmp_path, kmodel=tmp_path / "m.kmodel", kmodel_address=0,
                        image=tmp_path / "m.kmodel", isp_prog=dummy_program(tmp_path), say=lambda _l: None)


def test_baud_falls_back_when_the_bridge_cannot_carry_it(artifacts: dict, tmp_path: Path) -> None:
    sim = dataclasses.replace(FAST_SIM, max_baud=1_000_000)
    summary = flash_sim(tmp_path / "build", sim=sim, baud=1_500_000, kmodel=artifacts["folder"] / "model.kmodel")
    assert summary.session["baud"] == 1_000_000
    assert_flash_holds(tmp_path / "build" / "sim_flash.img", {0x300000: artifacts["kmodel"]})


def test_invoke_flash_exits_nonzero_on_a_bad_package(tmp_path: Path) -> None:
    bad = tmp_path / "bad.kfpkg"
    bad.write_bytes(b"PK not really a zip")
    result = subprocess.run([sys.executable, "-m", "invoke", "flash", "--kfpkg", str(bad)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "bad.kfpkg" in result.stderr and "not a zip" in result.stderr


@pytest.mark.parametrize(("board", "words"), [("qemu", "not flashed over the ISP"), ("host", "not flashed"),
                                               ("k211", "unknown board")])
def test_a_board_the_registry_does_not_flash_is_refused_before_anything_runs(tmp_path, artifacts, board, words):
    """Which boards `invoke flash` writes, and how it reaches them, is the board registry's (BoardSpec.flash_transport):
    the flasher keeps no list of its own and starts no simulated board for a board that is not flashed."""
    with pytest.raises(PipelineError, match=words) as caught:
        flash_artifacts(build_dir=tmp_path / "b", kmodel=tmp_path / "model.kmodel", board=board,
                        isp_prog=dummy_program(tmp_path), stub_dialect="vowstar", say=lambda _: None)
    assert caught.value.field == "--board"
    assert not (tmp_path / "b").exists()


def test_the_flasher_reaches_the_simulated_board_only_through_its_transport():
    from deploy.firmware.boards import BOARDS
    from deploy.isp import flasher, transports

    assert {name: spec.flash_transport for name, spec in BOARDS.items() if spec.flashed} == \
        {"sim": transports.SIMULATED, "k210": transports.SERIAL}
    assert not hasattr(flasher, "running_simboard") and hasattr(transports, "running_simboard")
