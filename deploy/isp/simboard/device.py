"""The K210 as the flasher sees it: reset logic from DTR/RTS, the ROM ISP (C2/C3/C5/C6) and a flash-stage program
with the vowstar, sipeed or ktool personality (spec §8.2). Pure logic: the server handles sockets and time."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from enum import Enum

from deploy.isp import slip
from deploy.isp.image import BOOT_SRAM_LIMIT, DIGEST_SIZE, PREFIX_SIZE, parse_firmware_image
from deploy.isp.isp_prog import DIALECTS, KNOWN_SHA256
from deploy.isp.packet import Op, Reason, Request, parse_request, read_reply, reply, request
from deploy.isp.simboard.faults import Faults
from deploy.isp.simboard.flash_memory import BLOCK, SECTOR, FlashMemory
from deploy.isp.simboard.options import SimOptions
from hardware.k210 import KPU_RAM_BYTES, SRAM_BYTES
from pipeline.errors import PipelineError

ROM_BAUD = 115200
MIN_BAUD, MAX_BAUD = 1200, 20_000_000
SRAM_BASE = 0x80000000
SRAM_SIZE = SRAM_BYTES + KPU_RAM_BYTES  # the ROM writes anywhere in the general SRAM and the AI RAM after it
ROM_FRAME_MAX = 1024
STUB_FRAME_MAX = 65536
WHOLE_CHIP = 0xFFFFFFEE
JEDEC_ID = bytes([0xC8, 0x60, 0x18])  # a GD25LQ128-class part
UNIQUE_ID = bytes(range(0x10, 0x18))
UNCHECKED_OPS = {Op.ROM_NOP, Op.FLASH_NOP, Op.REBOOT, Op.FLASH_STATUS, Op.FLASH_ID}


class State(Enum):
    RESET = "reset"
    ROM_ISP = "rom_isp"
    BOOTING_STUB = "booting_stub"
    STUB = "stub"
    APP = "app"
    SILENT = "silent"  # booted from flash but the image was not valid


@dataclass
class Emit:
    """Bytes the device puts on the line after being busy for `after_s`, at baud rate `baud`."""

    wire: bytes
    after_s: float
    baud: int


@dataclass
class Board:
    flash: FlashMemory
    options: SimOptions
    faults: Faults
    state: State = State.SILENT
    baud: int = ROM_BAUD
    dtr: bool = False
    rts: bool = False
    sram: bytearray = field(default_factory=lambda: bytearray(SRAM_SIZE))
    written: dict[int, int] = field(default_factory=dict)  # SRAM frame address -> length
    personality: str = "vowstar"
    flash_ready: bool = False
    erase_until: float = 0.0
    stub_ready_at: float = 0.0
    sample_at: float | None = None

    # ---- lines and reset -------------------------------------------------------------------------------------
    def set_lines(self, dtr: bool, rts: bool, now: float) -> list[Emit]:
        """DTR/RTS changed: RESET is held while its line is asserted; IO16 (asserted = low = ISP) is sampled
        `boot_sample_s` after RESET is released, as the ROM reads it only once it runs."""
        emits = self.tick(now)
        was_reset = self._reset_line()
        self.dtr, self.rts = dtr, rts
        if self._reset_line():
            self.state = State.RESET
            self.sample_at = None
        elif was_reset:
            self.sample_at = now + self.options.boot_sample_s
        return emits

    def tick(self, now: float, force: bool = False) -> list[Emit]:
        """Let time pass: a pending reset release starts the chip (at once when bytes arrive: it is running by then)."""
        if self.sample_at is not None and (force or now >= self.sample_at):
            self.sample_at = None
            return self.power_on(isp=self._boot_line())
        return []

    def _reset_line(self) -> bool:
        return self.rts if self.options.wiring == "dan" else self.dtr

    def _boot_line(self) -> bool:
        return self.dtr if self.options.wiring == "dan" else self.rts

    def power_on(self, isp: bool) -> list[Emit]:
        self.baud = ROM_BAUD
        self.flash_ready = False
        self.written.clear()
        if isp:
            self.state = State.ROM_ISP
            return []
        return self.boot_from_flash()

    def boot_from_flash(self) -> list[Emit]:
        """The ROM's flash boot: a valid image at offset 0 starts the 'application', which prints a banner."""
        try:
            largest = PREFIX_SIZE + BOOT_SRAM_LIMIT + DIGEST_SIZE
            image = parse_firmware_image(self.flash.read(0, largest), where="flash@0")
        except PipelineError:
            self.state = State.SILENT
            return []
        self.state = State.APP
        banner = f"K210-SIM boot: firmware payload {len(image.payload)} bytes sha256 {image.sha256}\r\n"
        return [Emit(banner.encode(), 0.0, ROM_BAUD)]

    # ---- frames -----------------------------------------------------------------------------------------------
    def handle(self, payload: bytes, now: float) -> tuple[list[Emit], str]:
        """One decoded frame from the host; returns what to send and a short note for the frame log."""
        req = parse_request(payload)
        started = self.tick(now, force=True)
        if started:
            return started, "frame ignored: the chip was just starting"
        if self.state == State.BOOTING_STUB and now >= self.stub_ready_at:
            self.state = State.STUB
        if self.state == State.ROM_ISP:
            return self._rom(req, now)
        if self.state == State.STUB:
            return self._stub(req, now)
        return [], f"ignored in state {self.state.value}"

    def _answer(self, op: int, reason: int, after_s: float = 0.0, body: bytes = b"") -> list[Emit]:
        return [Emit(slip.encode(reply(op, reason, body)), after_s, self.baud)]

    def _rom(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if req.op == Op.ROM_NOP:
            if self.faults.wrong_greeting():
                return self._answer(0xA6, Reason.OK), "greeting answered with a wrong op (injected)"
            return self._answer(Op.ROM_NOP, Reason.OK), "greeting"
        if req.op == Op.ROM_MEMORY_WRITE:
            if req.size < 16 or req.data_len > ROM_FRAME_MAX or req.data_len != len(req.data):
                return self._answer(req.op, Reason.BAD_DATA_LEN), "bad length"
            if not req.crc_ok:
                return self._answer(req.op, Reason.BAD_DATA_CHECKSUM), "bad crc"
            offset = req.address - SRAM_BASE
            if offset < 0 or offset + req.data_len > SRAM_SIZE:
                return self._answer(req.op, Reason.INVALID_COMMAND), "outside SRAM"
            self.sram[offset:offset + req.data_len] = req.data
            if req.data_len:
                self.written[offset] = req.data_len
            return self._answer(req.op, Reason.OK), "sram write"
        if req.op == Op.ROM_MEMORY_BOOT:
            if not req.crc_ok:
                return self._answer(req.op, Reason.BAD_DATA_CHECKSUM), "bad crc"
            program = self._uploaded(req.address - SRAM_BASE)
            if not program:
                return [], "boot refused: nothing written at the entry point"
            self.personality = _personality(program, self.options.personality)
            self.state = State.BOOTING_STUB
            self.stub_ready_at = now + self.options.boot_delay_s
            return [], f"boot {len(program)}-byte program as {self.personality}"
        if req.op == Op.ROM_CHANGE_BAUDRATE and req.data_len == 4 and len(req.data) == 4:
            rate = int(struct.unpack("<I", req.data)[0] * 38 / 38.6)
            if MIN_BAUD <= rate <= MAX_BAUD:
                self.baud = rate
            return [], f"rom baud {rate}"
        return self._answer(req.op, Reason.INVALID_COMMAND), "unknown op"

    def _uploaded(self, entry: int) -> bytes:
        """The contiguous bytes written from `entry` on."""
        end = entry
        for _ in range(len(self.written)):
            if end not in self.written:
                break
            end += self.written[end]
        return bytes(self.sram[entry:end]) if 0 <= entry < SRAM_SIZE else b""

    def _stub(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if req.op not in UNCHECKED_OPS and req.size >= 16 and not req.crc_ok:
            return self._answer(req.op, Reason.BAD_DATA_CHECKSUM), "bad crc"
        handler = {Op.FLASH_NOP: self._nop, Op.UARTHS_BAUDRATE_SET: self._baud, Op.FLASH_INIT: self._init,
                   Op.FLASH_WRITE: self._write, Op.REBOOT: self._reboot, Op.FLASH_ERASE: self._erase,
                   Op.FLASH_ERASE_NONBLOCKING: self._erase_start, Op.FLASH_STATUS: self._status,
                   Op.FLASH_READ: self._read, Op.FLASH_ID: self._flash_id}.get(req.op)
        if handler is None or (req.op in (Op.FLASH_READ, Op.FLASH_ID) and self.personality != "ktool") or (
                req.op in (Op.FLASH_ERASE_NONBLOCKING, Op.FLASH_STATUS) and self.personality != "vowstar"):
            return self._answer(req.op, Reason.INVALID_COMMAND), "unknown op"
        return handler(req, now)

    def _nop(self, req: Request, now: float) -> tuple[list[Emit], str]:
        return self._answer(Op.FLASH_NOP, Reason.OK), "greeting"

    def _baud(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if req.data_len != 4 or len(req.data) != 4:
            return self._answer(req.op, Reason.BAD_DATA_LEN), "bad length"
        (rate,) = struct.unpack("<I", req.data)
        if not MIN_BAUD <= rate <= MAX_BAUD:
            return self._answer(req.op, Reason.BAD_DATA_LEN), f"baud {rate} refused"
        emits = self._answer(req.op, Reason.OK) if self.options.d6_reply == "old" else []
        self.baud = rate
        if self.options.d6_reply == "new":
            emits = self._answer(req.op, Reason.OK, after_s=0.001)
        return emits, f"baud {rate}"

    def _init(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if req.address not in (0, 1):
            return self._answer(req.op, Reason.INVALID_COMMAND), "bad chip"
        self.flash_ready = True
        return self._answer(req.op, Reason.OK), "flash init"

    def _write(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if not self.flash_ready:
            return self._answer(req.op, Reason.INVALID_COMMAND), "flash not initialised"
        if req.data_len > STUB_FRAME_MAX or req.data_len != len(req.data) or not req.data:
            return self._answer(req.op, Reason.BAD_DATA_LEN), "bad length"
        if not self.flash.contains(req.address, req.data_len):
            return self._answer(req.op, Reason.BAD_EXEC), "outside flash"
        if now < self.erase_until or self.faults.busy():
            return self._answer(req.op, Reason.FLASH_BUSY), "busy"
        if self.personality == "sipeed" and (req.address % SECTOR or req.data_len % SECTOR):
            text = "Aligned error!" if req.address % SECTOR else "Length error!"
            return self._answer(Op.DEBUG_INFO, 0, body=text.encode()), text
        if self.personality == "ktool" and not _ktool_block(req.address, req.data_len):
            return self._answer(req.op, Reason.BAD_DATA_LEN), "ktool needs a 4K/64K block"
        if self.personality == "vowstar":
            start, end = req.address, req.address + req.data_len  # erases by address, keeps neighbouring bytes
        else:
            start, end = self.flash.erase_sectors(req.address, req.data_len)
        self.flash.program(req.address, req.data)
        busy = self._erase_time(start, end) + req.data_len / 256 * self.options.page_program_s
        return self._answer(req.op, Reason.OK, after_s=busy), f"write {req.data_len} at 0x{req.address:X}"

    def _erase_time(self, start: int, end: int) -> float:
        first = start - start % SECTOR
        last = -(-end // SECTOR) * SECTOR
        blocks = sum(1 for a in range(first, last, BLOCK) if a % BLOCK == 0 and a + BLOCK <= last)
        sectors = (last - first) // SECTOR - blocks * (BLOCK // SECTOR)
        return blocks * self.options.block_erase_s + sectors * self.options.sector_erase_s

    def _erase(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if self.personality == "ktool" or req.data_len == WHOLE_CHIP:
            self.flash.erase(0, self.flash.size)
            return self._answer(req.op, Reason.OK, after_s=self.options.chip_erase_s), "chip erase"
        if req.address % SECTOR or req.data_len % SECTOR or not self.flash.contains(req.address, req.data_len):
            return self._answer(req.op, Reason.BAD_DATA_LEN), "bad erase range"
        self.flash.erase(req.address, req.data_len)
        busy = self._erase_time(req.address, req.address + req.data_len)
        return self._answer(req.op, Reason.OK, after_s=busy), f"erase {req.data_len} at 0x{req.address:X}"

    def _erase_start(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if now < self.erase_until:
            return self._answer(req.op, Reason.FLASH_BUSY), "busy"
        length = self.flash.size if req.data_len == 0 else req.data_len
        if req.address % SECTOR or length % SECTOR or not self.flash.contains(req.address, length):
            return self._answer(req.op, Reason.BAD_DATA_LEN), "bad erase range"
        self.flash.erase(req.address, length)
        whole = length == self.flash.size
        self.erase_until = now + (self.options.chip_erase_s if whole else
                                  self._erase_time(req.address, req.address + length))
        return self._answer(req.op, Reason.OK), f"erase started {length} at 0x{req.address:X}"

    def _status(self, req: Request, now: float) -> tuple[list[Emit], str]:
        busy = now < self.erase_until
        return self._answer(req.op, Reason.FLASH_BUSY if busy else Reason.OK), "status"

    def _read(self, req: Request, now: float) -> tuple[list[Emit], str]:
        size = struct.unpack("<I", req.data)[0] if req.data_len == 4 and len(req.data) == 4 else 0
        if not _ktool_block(req.address, size) or not self.flash.contains(req.address, size):
            return self._answer(req.op, Reason.BAD_DATA_LEN), "bad read"
        frame = slip.encode(read_reply(req.address, self.flash.read(req.address, size)))
        return [Emit(frame, 0.0, self.baud)], f"read {size} at 0x{req.address:X}"

    def _flash_id(self, req: Request, now: float) -> tuple[list[Emit], str]:
        return [Emit(slip.encode(request(Op.FLASH_ID, 0, JEDEC_ID + UNIQUE_ID)), 0.0, self.baud)], "flash id"

    def _reboot(self, req: Request, now: float) -> tuple[list[Emit], str]:
        if self.personality == "sipeed" and self.options.sipeed_reboot == "e3":
            return self._answer(req.op, Reason.INVALID_COMMAND), "reboot refused"
        if self.personality == "ktool":
            emits = self._answer(Op.DEBUG_INFO, 0, body=b"Reboot!!!")
        else:
            emits = self._answer(req.op, Reason.OK)
        return emits + self.power_on(isp=False), "reboot"


def _ktool_block(address: int, size: int) -> bool:
    return size in (SECTOR, BLOCK) and address % size == 0


def _personality(program: bytes, default: str) -> str:
    """Pick the dialect from the program's SHA-256 (spec §3.3), else the configured default."""
    known = KNOWN_SHA256.get(hashlib.sha256(program).hexdigest())
    name = known[1] if known else default
    return name if name in DIALECTS else default
