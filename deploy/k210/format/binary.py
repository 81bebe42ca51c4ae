"""Bounds-checked little-endian reading and aligned writing of binary files (kmodel bodies, register words).

Every read names the field it is reading, so a truncated or corrupt file is rejected with a PipelineError that
gives the byte offset and the field, never with an IndexError or struct.error.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError


class ByteReader:
    """A cursor over bytes; each read checks that the bytes exist and names the field being read."""

    def __init__(self, data: bytes, *, path: str | Path | None = None, offset: int = 0) -> None:
        self.data = data
        self.path = path
        self.offset = offset

    def fail(self, message: str, field: str, expected: str | None = None, offset: int | None = None) -> PipelineError:
        at = self.offset if offset is None else offset
        return PipelineError(f"{message} at offset {at}", path=self.path, field=field, expected=expected)

    def need(self, size: int, field: str) -> None:
        if size < 0 or self.offset < 0 or self.offset + size > len(self.data):
            raise self.fail(f"file ends after {len(self.data)} bytes, {size} bytes needed", field,
                            expected="a complete, untruncated file")

    def unpack(self, fmt: str, field: str) -> tuple:
        size = struct.calcsize(fmt)
        self.need(size, field)
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def raw(self, size: int, field: str) -> bytes:
        self.need(size, field)
        chunk = bytes(self.data[self.offset:self.offset + size])
        self.offset += size
        return chunk

    def array(self, dtype: str, count: int, field: str) -> np.ndarray:
        """`count` little-endian items of `dtype` (a NumPy dtype string such as '<f4')."""
        item = np.dtype(dtype).itemsize
        return np.frombuffer(self.raw(item * count, field), dtype=dtype).copy()


class ByteWriter:
    """An append-only byte buffer with alignment padding."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    @property
    def offset(self) -> int:
        return len(self.buffer)

    def pack(self, fmt: str, *values: int | float) -> None:
        self.buffer += struct.pack(fmt, *values)

    def raw(self, data: bytes) -> None:
        self.buffer += data

    def align(self, alignment: int) -> None:
        self.buffer += bytes(-len(self.buffer) % alignment)


def extract_bits(word: int, lsb: int, width: int, signed: bool) -> int:
    """The field of `width` bits at `lsb` in `word`, sign-extended when `signed`."""
    value = (word >> lsb) & ((1 << width) - 1)
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def insert_bits(value: int, lsb: int, width: int, signed: bool, name: str) -> int:
    """`value` masked to `width` bits and shifted to `lsb`; a value that does not fit raises PipelineError."""
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if not low <= value <= high:
        raise PipelineError(f"value {value} does not fit", field=name,
                            expected=f"{'signed' if signed else 'unsigned'} {width}-bit value in [{low}, {high}]")
    return (value & ((1 << width) - 1)) << lsb
