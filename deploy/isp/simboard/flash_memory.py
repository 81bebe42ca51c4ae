"""The simulated SPI NOR flash: a file-backed 16 MiB image (0xFF when erased), shared through mmap so that other
processes see writes at once."""

from __future__ import annotations

import mmap
from pathlib import Path

from deploy.isp.image import FLASH_SIZE
from pipeline.atomic import atomic_open
from pipeline.errors import PipelineError

SECTOR = 4096
BLOCK = 65536


def check_flash_file(path: Path, size: int = FLASH_SIZE) -> None:
    """Refuse a flash image path that is a folder or an existing file of another size (never replace user data)."""
    if path.is_dir():
        raise PipelineError("is a folder", path=path, field="--flash", expected=f"a {size}-byte flash image file")
    if path.exists() and path.stat().st_size != size:
        raise PipelineError(f"existing file of {path.stat().st_size} bytes is not a flash image; it is left as it is",
                            path=path, field="--flash", expected=f"a {size}-byte flash image, or a new file name")


class FlashMemory:
    def __init__(self, path: Path, size: int = FLASH_SIZE) -> None:
        self.path = Path(path)
        self.size = size
        check_flash_file(self.path, size)
        if not self.path.exists():
            with atomic_open(self.path) as handle:
                handle.write(b"\xff" * size)
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
