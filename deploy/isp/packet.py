"""ISP request/reply codec: 16-byte little-endian header (op, reserved, CRC-32 over bytes 8.., address, length)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct("<HHIII")
HEADER_SIZE = HEADER.size


class Op(IntEnum):
    ROM_ECHO = 0xC1
    ROM_NOP = 0xC2
    ROM_MEMORY_WRITE = 0xC3
    ROM_MEMORY_READ = 0xC4
    ROM_MEMORY_BOOT = 0xC5
    ROM_CHANGE_BAUDRATE = 0xC6
    DEBUG_INFO = 0xD1
    FLASH_NOP = 0xD2
    FLASH_ERASE = 0xD3
    FLASH_WRITE = 0xD4
    REBOOT = 0xD5
    UARTHS_BAUDRATE_SET = 0xD6
    FLASH_INIT = 0xD7
    FLASH_ERASE_NONBLOCKING = 0xD8
    FLASH_STATUS = 0xD9
    FLASH_READ = 0xDA
    FLASH_ID = 0xDE
    FLASH_ERASE_BLOCK = 0xDF


class Reason(IntEnum):
    DEFAULT = 0x00
    OK = 0xE0
    BAD_DATA_LEN = 0xE1
    BAD_DATA_CHECKSUM = 0xE2
    INVALID_COMMAND = 0xE3
    BAD_INITIALIZATION = 0xE4
    BAD_EXEC = 0xE5
    BAD_WRITE = 0xE6
    FLASH_BUSY = 0xE7


def crc32(data: bytes) -> int:
    """CRC-32/IEEE (zlib), as carried in the request header."""
    return zlib.crc32(data) & 0xFFFFFFFF


def request(op: int, address: int = 0, data: bytes = b"", length: int | None = None) -> bytes:
    """A full request payload (before SLIP): header with CRC over address + length + data, then the data."""
    body = struct.pack("<II", address, len(data) if length is None else length) + data
    return struct.pack("<HHI", op, 0, crc32(body)) + body


def short_request(op: int) -> bytes:
    """The 13-byte form of a parameterless op (op, twelve zero bytes, CRC 0) that every tool sends for NOP/REBOOT."""
    return bytes([op]) + bytes(12)


def baud_request(op: int, baud: int) -> bytes:
    """C6/D6: address 0, length 4, data = u32 baud rate."""
    return request(op, 0, struct.pack("<I", baud))


@dataclass(frozen=True)
class Request:
    """A parsed request; short (< 16 byte) frames have the fields they carry and zeros for the rest."""

    op: int
    checksum: int
    address: int
    data_len: int
    data: bytes
    size: int

    @property
    def crc_ok(self) -> bool:
        return self.size >= HEADER_SIZE and crc32(struct.pack("<II", self.address, self.data_len) + self.data) == \
            self.checksum


def parse_request(payload: bytes) -> Request:
    """Parse a request payload of any length (short parameterless forms included); raises ValueError if empty."""
    if not payload:
        raise ValueError("empty request")
    padded = payload[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0")
    op, _reserved, checksum, address, data_len = HEADER.unpack(padded)
    return Request(op & 0xFF, checksum, address, data_len, payload[HEADER_SIZE:], len(payload))


@dataclass(frozen=True)
class Reply:
    """A device reply: the echoed op, the reason byte, and any trailing text/data."""

    op: int
    reason: int
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.reason == Reason.OK

    def describe(self) -> str:
        try:
            op_name = Op(self.op).name
        except ValueError:
            op_name = f"0x{self.op:02X}"
        try:
            reason_name = Reason(self.reason).name
        except ValueError:
            reason_name = f"0x{self.reason:02X}"
        return f"{op_name}/{reason_name}"


def parse_reply(payload: bytes) -> Reply | None:
    """A reply payload as (op, reason, body), or None when it is shorter than two bytes."""
    if len(payload) < 2:
        return None
    return Reply(payload[0], payload[1], payload[2:])


def reply(op: int, reason: int, body: bytes = b"") -> bytes:
    return bytes([op, reason]) + body


def read_reply(address: int, data: bytes) -> bytes:
    """The ktool FLASH_READ reply: a request-shaped header (op DA, CRC over bytes 8..) followed by the data."""
    return request(Op.FLASH_READ, address, data)
