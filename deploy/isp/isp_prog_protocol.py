"""Stage 2, the flash-stage program: greet, raise the baud rate (with fall-back), init the flash, write in frames,
read back where the program can, reboot."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from deploy.isp.frames import BLOCK, SECTOR, write_in_frames
from deploy.isp.isp_prog import Dialect
from deploy.isp.link import IspError, IspLink
from deploy.isp.packet import Op, baud_request, parse_request, request, short_request

BAUD_CHAIN = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 460_800, 230_400, 115_200)
FLASH_CHIP = 1  # every tool sends 1 (spec §2.4)
ATTEMPTS = 32


def baud_candidates(target: int) -> list[int]:
    """The requested rate, then the standard rates below it."""
    return [target, *(rate for rate in BAUD_CHAIN if rate < target)]


class BaudLost(IspError):
    """The stub took a new baud rate that the line cannot carry."""

    def __init__(self, rate: int) -> None:
        super().__init__(f"lost contact after switching to {rate} baud")
        self.rate = rate


class FlashStage:
    def __init__(self, link: IspLink, dialect: Dialect) -> None:
        self.link = link
        self.dialect = dialect

    def greet(self, attempts: int = 11) -> bool:
        """D2 until [D2, E0]."""
        for _ in range(attempts):
            if self.link.try_once(short_request(Op.FLASH_NOP), Op.FLASH_NOP, 2 * self.link.timing.greeting_s) is None:
                return True
        return False

    def raise_baud(self, rates: list[int]) -> int:
        """Try `rates` (highest first) until one greets; a rate the stub did not take is skipped. Raises BaudLost
        when the stub switched but answers at neither rate (the board must be reset to recover)."""
        current = self.link.baud
        for rate in (r for r in rates if r > current):
            self.link.send(baud_request(Op.UARTHS_BAUDRATE_SET, rate))
            self.link.port.flush()
            time.sleep(self.link.timing.baud_settle_s)
            self.link.baud = rate
            if self.greet(3):
                return rate
            self.link.log(f"no greeting at {rate} baud; back to {current}")
            self.link.baud = current
            if not self.greet(3):
                raise BaudLost(rate)
        return current

    def init_flash(self) -> None:
        self.link.exchange(request(Op.FLASH_INIT, FLASH_CHIP), Op.FLASH_INIT, "flash init", ATTEMPTS)

    def prepared(self, data: bytes) -> bytes:
        """The bytes actually sent: sector-aligned dialects get whole sectors (tail padded with 0xFF = erased)."""
        if self.dialect.sector_aligned and len(data) % SECTOR:
            return data + b"\xff" * (SECTOR - len(data) % SECTOR)
        return data

    def write(self, address: int, data: bytes, progress: Callable[[int], None] | None = None) -> int:
        """Write `data` (already `prepared`) at `address`; returns the number of frames sent."""
        min_frame = SECTOR if self.dialect.sector_aligned else 64
        return write_in_frames(self.link, Op.FLASH_WRITE, address, data, max_frame=BLOCK, min_frame=min_frame,
                               attempts=ATTEMPTS, what="flash write", aligned=self.dialect.sector_aligned,
                               progress=progress)

    def read_block(self, address: int, size: int) -> bytes:
        """FLASH_READ (ktool dialect): one 4 KiB or 64 KiB block, its reply CRC checked; retried on any fault."""
        payload = request(Op.FLASH_READ, address, struct.pack("<I", size))
        timeout = self.link.timing.reply_timeout(size + 32, self.link.baud)
        for _ in range(ATTEMPTS):
            self.link.send(payload)
            frame = self.link.next_frame(time.monotonic() + timeout)
            if frame is not None and frame.valid and len(frame.payload) >= 16:
                got = parse_request(frame.payload)
                if got.op == Op.FLASH_READ and got.crc_ok and got.address == address and len(got.data) == size:
                    return got.data
            self.link.anomalies += 1
            self.link.resync()
        raise IspError(f"flash read at 0x{address:08X} failed {ATTEMPTS} times")

    def verify(self, address: int, data: bytes, progress: Callable[[int], None] | None = None) -> list[int]:
        """Read back `data` (whole sectors at a sector address) and return the addresses of sectors that differ."""
        bad = []
        offset = 0
        while offset < len(data):
            block = address + offset
            size = BLOCK if block % BLOCK == 0 and len(data) - offset >= BLOCK else SECTOR
            got = self.read_block(block, size)
            bad += [block + sub for sub in range(0, size, SECTOR)
                    if got[sub:sub + SECTOR] != data[offset + sub:offset + sub + SECTOR]]
            offset += size
            if progress is not None:
                progress(size)
        return bad

    def reboot(self) -> bool:
        """Ask the program to reset the chip; True when it confirmed (D5 E0, or ktool's "Reboot" message)."""
        if self.dialect.reboot == "none":
            return False
        if self.dialect.reboot == "text":
            self.link.send(short_request(Op.REBOOT))
            deadline = time.monotonic() + 2 * self.link.timing.greeting_s
            while (frame := self.link.next_frame(deadline)) is not None:
                if frame.payload[:1] == bytes([Op.DEBUG_INFO]) and b"Reboot" in frame.payload:
                    return True
            return False
        try:
            self.link.exchange(short_request(Op.REBOOT), Op.REBOOT, "reboot", attempts=5,
                               timeout=2 * self.link.timing.greeting_s)
        except IspError as exc:
            self.link.log(str(exc))
            return False
        return True
