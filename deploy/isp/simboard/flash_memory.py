"""The simulated SPI NOR flash: a file-backed 16 MiB image (0xFF when erased), shared through mmap so that other
processes see writes at once."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from deploy.isp.image import FLASH_SIZE

SECTOR = 4096
BLOCK = 65536


class FlashMemory:
    def __init__(self, path: Path, size: int = FLASH_SIZE) -> None:
        self.path = Path(path)
        self.size = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size != size:
            tmp = self.path.with_name(f".{self.path.name}.new")
            tmp.write_bytes(b"\xff" * size)
            os.replace(tmp, self.path)
        self._file = open(self.path, "r+b")  # noqa: SIM115 - lives as long as the board
        self._map = mmap.mmap(self._file.fileno(), size)

    def contains(self, address: int, length: int) -> bool:
        return address >= 0 and length >= 0 and address + length <= self.size

    def read(self, address: int, length: int) -> bytes:
        return self._map[address:address + length]

    def program(self, address: int, data: bytes) -> None:
        self._map[address:address + len(data)] = data

    def erase(self, address: int, length: int) -> None:
        self._map[address:address + length] = b"\xff" * length

    def erase_sectors(self, address: int, length: int) -> tuple[int, int]:
        """Erase every 4 KiB sector touched by [address, address + length), as a real chip would; returns the
        erased range."""
        start = address - address % SECTOR
        end = -(-(address + length) // SECTOR) * SECTOR
        self.erase(start, end - start)
        return start, end

    def close(self) -> None:
        self._map.flush()
        self._map.close()
        self._file.close()
