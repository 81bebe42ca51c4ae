"""The K210 bootable firmware image (flags, u32 length, payload, SHA-256 of all before it) and flash read-back."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from hardware.k210 import FLASH_BYTES, SRAM_BYTES
from pipeline.errors import PipelineError

FLAG_AES = 0x01
FLAG_DIO = 0x02  # kflash >= 1.1.5 default (`-i dio`)
PREFIX_SIZE = 5
DIGEST_SIZE = 32
BOOT_SRAM_LIMIT = SRAM_BYTES  # the ROM copies the payload to general SRAM 0x80000000..0x805FFFFF
FLASH_SIZE = FLASH_BYTES


def firmware_image(payload: bytes, flags: int = FLAG_DIO) -> bytes:
    """Wrap a raw .bin (linked at 0x80000000) into the image the boot ROM loads from flash offset 0."""
    head = bytes([flags]) + struct.pack("<I", len(payload)) + payload
    return head + hashlib.sha256(head).digest()


@dataclass(frozen=True)
class FirmwareImage:
    """A parsed, verified firmware image."""

    flags: int
    payload: bytes
    sha256: str

    @property
    def size(self) -> int:
        return PREFIX_SIZE + len(self.payload) + DIGEST_SIZE


def parse_firmware_image(data: bytes, where: str = "firmware image") -> FirmwareImage:
    """Check flags, length and SHA-256 of an image at the start of `data` (trailing bytes are ignored)."""
    if len(data) < PREFIX_SIZE + DIGEST_SIZE:
        raise PipelineError(f"only {len(data)} bytes", path=where, field="header", expected="at least 37 bytes")
    flags = data[0]
    if flags & ~(FLAG_AES | FLAG_DIO):
        raise PipelineError(f"flags byte 0x{flags:02X}", path=where, field="offset 0 (flags)",
                            expected="only bit 0 (AES) and bit 1 (DIO) set")
    if flags & FLAG_AES:
        raise PipelineError("AES-encrypted image", path=where, field="offset 0 (flags)",
                            expected="a plain image (AES needs the board's OTP key and is out of scope)")
    (length,) = struct.unpack_from("<I", data, 1)
    if length > BOOT_SRAM_LIMIT or PREFIX_SIZE + length + DIGEST_SIZE > len(data):
        raise PipelineError(f"payload length {length} does not fit", path=where, field="offset 1 (length)",
                            expected=f"<= {min(BOOT_SRAM_LIMIT, len(data) - PREFIX_SIZE - DIGEST_SIZE)} bytes")
    end = PREFIX_SIZE + length
    digest = hashlib.sha256(data[:end]).digest()
    if digest != data[end:end + DIGEST_SIZE]:
        raise PipelineError("SHA-256 mismatch", path=where, field=f"offset {end} (sha256)",
                            expected=digest.hex())
    return FirmwareImage(flags, bytes(data[PREFIX_SIZE:end]), digest.hex())


def read_flash_region(flash_path: Path, address: int, length: int) -> bytes:
    """`length` bytes of a flash image file at `address` (bounds checked)."""
    flash_path = Path(flash_path)
    size = flash_path.stat().st_size
    if address < 0 or length < 0 or address + length > size:
        raise PipelineError(f"region 0x{address:X}+{length} is outside the {size}-byte flash image",
                            path=flash_path, field="address", expected=f"address + length <= {size}")
    with open(flash_path, "rb") as handle:
        handle.seek(address)
        return handle.read(length)


def read_flash_firmware(flash_path: Path, address: int = 0) -> FirmwareImage:
    """Extract and verify the firmware image (flags, length, SHA-256) stored in a flash image at `address`."""
    flash_path = Path(flash_path)
    head = read_flash_region(flash_path, address, PREFIX_SIZE)
    (length,) = struct.unpack_from("<I", head, 1)
    available = flash_path.stat().st_size - address
    whole = read_flash_region(flash_path, address, min(available, PREFIX_SIZE + length + DIGEST_SIZE))
    return parse_firmware_image(whole, where=f"{flash_path}@0x{address:X}")
