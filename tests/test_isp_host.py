"""Host-side pieces: port choice, reset sequences, loading the flash-stage program, and the line-rate model and
same-address retries as seen in the simulated board's frame log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from benchmarks.bench_flash import write_ratio
from deploy.isp.isp_prog import KNOWN_SHA256, load_flash_program
from deploy.isp.ports import choose_port
from deploy.isp.reset import FAMILIES, apply_steps, families_for
from deploy.isp.upstream_kflash import kflash_available
from pipeline.errors import PipelineError
from tests.conftest import FAST_SIM, flash_sim


def _port(device: str, vid: int | None, serial_number: str = "A1", location: str = "1-2:1.0") -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number, info.location = vid, 0x6010 if vid else None, serial_number, location
    return info


def test_port_choice_prefers_known_bridges_and_the_right_interface() -> None:
    ports = [_port("/dev/ttyS0", None), _port("/dev/ttyUSB1", 0x0403, location="1-2:1.1"),
             _port("/dev/ttyUSB0", 0x0403, location="1-2:1.0")]
    quiet = {"say": lambda _line: None}
    assert choose_port("dan", ports, **quiet) == "/dev/ttyUSB0"
    assert choose_port("goE", ports, **quiet) == "/dev/ttyUSB1"
    assert choose_port("goE", [_port("/dev/ttyUSB5", 0x1A86)], **quiet) == "/dev/ttyUSB5"
    with pytest.raises(PipelineError, match="no K210 USB-UART bridge"):
        choose_port("auto", [_port("/dev/ttyS0", None)], **quiet)


class _NoModemLines:
    """A pty-like port: pyserial raises ENOTTY when DTR/RTS are set."""

    def __setattr__(self, name: str, value: object) -> None:
        raise OSError(25, "Inappropriate ioctl for device")


class _Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, bool]] = []

    def __setattr__(self, name: str, value: object) -> None:
        if name == "changes":
            object.__setattr__(self, name, value)
        else:
            self.changes.append((name, value))


def test_reset_sequences() -> None:
    assert [f.name for f in families_for("auto")] == ["dan", "kd233", "goD", "kd233"]
    assert families_for("maixduino") == (FAMILIES["kd233"],) and families_for("bit") == (FAMILIES["dan"],)
    with pytest.raises(PipelineError, match="board type"):
        families_for("esp32")
    recorder = _Recorder()
    assert apply_steps(recorder, FAMILIES["dan"].isp_entry, 0.0)
    assert recorder.changes == [("dtr", False), ("rts", False), ("dtr", False), ("rts", True), ("dtr", True),
                                ("rts", False)]
    assert not apply_steps(_NoModemLines(), FAMILIES["dan"].isp_entry, 0.0)


def test_flash_program_sources(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not found"):
        load_flash_program(tmp_path / "missing.bin")
    (tmp_path / "p.bin").write_bytes(b"\x01" * 64)
    assert load_flash_program(tmp_path / "p.bin").label == "unknown program"
    assert load_flash_program(tmp_path / "p.bin", "ktool").dialect.load_address == 0x805E0000
    with pytest.raises(PipelineError, match="dialect"):
        load_flash_program(tmp_path / "p.bin", "esp")


@pytest.mark.skipif(not kflash_available(), reason="kflash (PyPI) is not installed")
def test_flash_program_read_from_installed_kflash() -> None:
    program = load_flash_program()
    assert KNOWN_SHA256[hashlib.sha256(program.data).hexdigest()][1] == program.dialect.name == "vowstar"


def test_line_rate_is_modelled(tmp_path: Path) -> None:
    """64 KiB at 1.5 Mbaud occupy the line for at least 0.437 s on the board, and the ratio stays below 1."""
    sim = dataclasses.replace(FAST_SIM, pace_line=True, log=str(tmp_path / "frames.log"))
    (tmp_path / "k.bin").write_bytes(os.urandom(65536))
    flash_sim(tmp_path / "build", sim=sim, kmodel=tmp_path / "k.bin", stub_size=512)
    measured = write_ratio(tmp_path / "frames.log")
    assert measured["payload_bytes"] == 65536
    assert measured["write_seconds"] >= 65536 * 10 / 1_500_000 and 0.5 < measured["ratio_of_line_rate"] <= 1.0


def test_stub_upload_retries_the_same_address(tmp_path: Path) -> None:
    """With frames corrupted on the way in, the acknowledged ROM writes still run contiguously through the program
    (a failed frame is retried where it was, never skipped), and the board boots the complete program."""
    sim = dataclasses.replace(FAST_SIM, corrupt_in=0.002, seed=7, log=str(tmp_path / "frames.log"))
    (tmp_path / "k.bin").write_bytes(b"k" * 100)
    flash_sim(tmp_path / "build", sim=sim, kmodel=tmp_path / "k.bin", stub_size=6000, baud=115200)
    records = [json.loads(line) for line in (tmp_path / "frames.log").read_text().splitlines()]
    rom = [r for r in records if r.get("op") == "C3"]
    assert any(r["note"] != "sram write" for r in rom), "the seed was meant to corrupt at least one stub frame"
    written = [(r["address"], r["size"] - 16) for r in rom if r["note"] == "sram write"]
    end = written[0][0]
    for address, length in written:
        assert address <= end, f"a gap before 0x{address:X}: frames were skipped"
        end = max(end, address + length)
    assert end - written[0][0] == 6000
    assert any(r.get("note") == "boot 6000-byte program as vowstar" for r in records)
