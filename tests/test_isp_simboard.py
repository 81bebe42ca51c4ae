"""The simulated board's device model, driven directly: reset wiring, ROM ISP and flash-stage personalities."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from pathlib import Path

import pytest

from deploy.isp import slip
from deploy.isp.image import firmware_image
from deploy.isp.packet import Op, Reason, baud_request, parse_request, request, short_request
from deploy.isp.simboard.device import SRAM_BASE, Board, State
from deploy.isp.simboard.faults import FaultConfig, Faults
from deploy.isp.simboard.flash_memory import FlashMemory
from deploy.isp.simboard.options import SimOptions

OPTIONS = SimOptions().fast()


def _board(tmp_path: Path, **changes) -> Board:
    options = dataclasses.replace(OPTIONS, **changes)
    return Board(FlashMemory(tmp_path / "flash.img"), options, Faults(options.faults))


def _reply(board: Board, payload: bytes, now: float = 100.0) -> bytes | None:
    emits, _note = board.handle(payload, now)
    if not emits:
        return None
    return slip.decode(emits[0].wire)


def _into_isp(board: Board) -> None:
    """The dan ISP-entry sequence, line by line as pyserial sends it (DTR first, then RTS)."""
    for dtr, rts in ((False, True), (True, True), (True, False)):
        board.set_lines(dtr, rts, 0.0)
    board.tick(1.0)


def _stub(board: Board, program: bytes = b"\x13" * 64) -> None:
    _into_isp(board)
    assert _reply(board, request(Op.ROM_MEMORY_WRITE, SRAM_BASE, program)) == bytes([Op.ROM_MEMORY_WRITE, Reason.OK])
    assert _reply(board, request(Op.ROM_MEMORY_BOOT, SRAM_BASE)) is None
    assert _reply(board, request(Op.FLASH_INIT, 1), now=200.0) == bytes([Op.FLASH_INIT, Reason.OK])


@pytest.mark.parametrize(("wiring", "sequence", "expected"), [
    ("dan", ((False, True), (True, True), (True, False)), State.ROM_ISP),
    ("dan", ((False, True), (False, False)), State.SILENT),  # run from flash, nothing valid there
    ("kd233", ((True, False), (True, True), (False, True)), State.ROM_ISP),
    ("kd233", ((False, True), (True, True), (True, False)), State.RESET),  # dan sequence holds a kd233 in reset
])
def test_reset_wiring(tmp_path: Path, wiring: str, sequence: tuple, expected: State) -> None:
    board = _board(tmp_path, wiring=wiring)
    for dtr, rts in sequence:
        board.set_lines(dtr, rts, 0.0)
    board.tick(1.0)
    assert board.state == expected


def test_io16_is_sampled_after_reset_release(tmp_path: Path) -> None:
    """kflash's dan sequence releases RESET before asserting IO16; the ROM samples IO16 a little later."""
    board = _board(tmp_path, boot_sample_s=0.1)
    board.set_lines(False, True, 0.0)
    board.set_lines(False, False, 1.0)
    board.set_lines(True, False, 1.05)
    board.tick(1.2)
    assert board.state == State.ROM_ISP


def test_rom_isp_answers(tmp_path: Path) -> None:
    board = _board(tmp_path)
    _into_isp(board)
    assert _reply(board, short_request(Op.ROM_NOP)) == bytes([Op.ROM_NOP, Reason.OK])
    good = request(Op.ROM_MEMORY_WRITE, SRAM_BASE, b"\x01" * 8)
    bad_crc = good[:20] + b"\x02" + good[21:]
    assert _reply(board, bad_crc)[1] == Reason.BAD_DATA_CHECKSUM
    assert _reply(board, request(Op.ROM_MEMORY_WRITE, SRAM_BASE, b"\x01" * 1025))[1] == Reason.BAD_DATA_LEN
    assert _reply(board, good[:18])[1] == Reason.BAD_DATA_LEN
    assert _reply(board, request(Op.ROM_MEMORY_WRITE, 0x10000000, b"\x01"))[1] == Reason.INVALID_COMMAND
    assert _reply(board, short_request(Op.ROM_ECHO)) == bytes([Op.ROM_ECHO, Reason.INVALID_COMMAND])
    assert _reply(board, request(Op.ROM_MEMORY_BOOT, SRAM_BASE + 0x1000)) is None  # nothing written there
    assert board.state == State.ROM_ISP


def test_boot_identifies_personality_by_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = b"\x6f" * 100
    from deploy.isp.simboard import device

    monkeypatch.setitem(device.KNOWN_SHA256, hashlib.sha256(program).hexdigest(), ("test", "ktool"))
    board = _board(tmp_path)
    _stub(board, program)
    assert board.personality == "ktool" and board.state == State.STUB


def test_isp_prog_protocol_vowstar(tmp_path: Path) -> None:
    board = _board(tmp_path)
    _into_isp(board)
    _reply(board, request(Op.ROM_MEMORY_WRITE, SRAM_BASE, b"\x13" * 16))
    _reply(board, request(Op.ROM_MEMORY_BOOT, SRAM_BASE))
    assert _reply(board, request(Op.FLASH_WRITE, 0, b"x"), now=200.0)[1] == Reason.INVALID_COMMAND  # no init yet
    assert _reply(board, request(Op.FLASH_INIT, 7), now=200.0)[1] == Reason.INVALID_COMMAND
    assert _reply(board, request(Op.FLASH_INIT, 1), now=200.0)[1] == Reason.OK
    board.flash.program(0x2000, b"\xaa" * 16)
    assert _reply(board, request(Op.FLASH_WRITE, 0x2004, b"\x55" * 4), now=200.0)[1] == Reason.OK
    assert board.flash.read(0x2000, 12) == b"\xaa" * 4 + b"\x55" * 4 + b"\xaa" * 4  # neighbours kept
    assert _reply(board, request(Op.FLASH_ERASE_NONBLOCKING, 0x0, length=0x1000), now=200.0)[1] == Reason.OK
    assert _reply(board, short_request(Op.FLASH_STATUS), now=200.0)[1] == Reason.OK  # fast mode: done at once
    assert board.flash.read(0x0, 0x1000) == b"\xff" * 0x1000
    assert _reply(board, request(Op.FLASH_READ, 0, struct.pack("<I", 4096)), now=200.0)[1] == Reason.INVALID_COMMAND
    assert _reply(board, baud_request(Op.UARTHS_BAUDRATE_SET, 1_500_000), now=200.0) is None
    assert board.baud == 1_500_000


def test_isp_prog_protocol_sipeed_and_ktool_rules(tmp_path: Path) -> None:
    sipeed = _board(tmp_path / "s", personality="sipeed")
    _stub(sipeed)
    sipeed.flash.program(0x1000, b"\xaa" * 0x2000)
    assert slip.decode(sipeed.handle(request(Op.FLASH_WRITE, 0x1800, b"\x00" * 4096), 200.0)[0][0].wire) == \
        bytes([Op.DEBUG_INFO, 0]) + b"Aligned error!"
    assert _reply(sipeed, request(Op.FLASH_WRITE, 0x1000, b"\x01" * 4096), now=200.0)[1] == Reason.OK
    assert _reply(sipeed, short_request(Op.REBOOT), now=200.0)[1] == Reason.INVALID_COMMAND

    (tmp_path / "k").mkdir()
    ktool = _board(tmp_path / "k", personality="ktool")
    _stub(ktool)
    assert _reply(ktool, request(Op.FLASH_WRITE, 0x1000, b"\x01" * 100), now=200.0)[1] == Reason.BAD_DATA_LEN
    assert _reply(ktool, request(Op.FLASH_WRITE, 0x1000, b"\x01" * 4096), now=200.0)[1] == Reason.OK
    read = parse_request(_reply(ktool, request(Op.FLASH_READ, 0x1000, struct.pack("<I", 4096)), now=200.0))
    assert read.op == Op.FLASH_READ and read.crc_ok and read.address == 0x1000 and read.data == b"\x01" * 4096
    emits, _ = ktool.handle(short_request(Op.REBOOT), 200.0)
    assert slip.decode(emits[0].wire) == bytes([Op.DEBUG_INFO, 0]) + b"Reboot!!!"
    assert ktool.state == State.SILENT


def test_reboot_boots_a_valid_image_and_prints_its_hash(tmp_path: Path) -> None:
    board = _board(tmp_path)
    _stub(board)
    image = firmware_image(b"hello k210" * 10)
    assert _reply(board, request(Op.FLASH_WRITE, 0, image), now=200.0)[1] == Reason.OK
    emits, _ = board.handle(short_request(Op.REBOOT), 200.0)
    assert slip.decode(emits[0].wire) == bytes([Op.REBOOT, Reason.OK])
    assert board.state == State.APP
    assert hashlib.sha256(image[:-32]).hexdigest().encode() in emits[1].wire


def test_faults_are_seeded_and_rate_shaped() -> None:
    data = bytes(100_000)
    first = Faults(FaultConfig(seed=5)).corrupt(data, 0.01)
    assert first == Faults(FaultConfig(seed=5)).corrupt(data, 0.01)
    changed = sum(1 for byte in first if byte)
    assert 800 < changed < 1200
