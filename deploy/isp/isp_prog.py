"""The flash-stage program (ISP_PROG): read at run time from the installed kflash package or a user file, never
stored in this project; identified by SHA-256 to pick the command dialect it speaks (spec §3.3)."""

from __future__ import annotations

import ast
import binascii
import hashlib
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

from hardware.k210 import SRAM_BYTES
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Dialect:
    """What a flash-stage program accepts (spec §2.4, §3)."""

    name: str
    load_address: int
    sector_aligned: bool  # writes must be whole 4 KiB sectors (padded with 0xFF) on sector boundaries
    can_read: bool  # FLASH_READ (0xDA) exists, so read-back verification is possible
    reboot: str  # how D5 is answered: "ack" (D5 E0), "text" (a D1 "Reboot!!!" message), "none" (use DTR/RTS)


DIALECTS = {
    "vowstar": Dialect("vowstar", 0x80000000, sector_aligned=False, can_read=False, reboot="ack"),
    "sipeed": Dialect("sipeed", 0x80000000, sector_aligned=True, can_read=False, reboot="none"),
    "ktool": Dialect("ktool", 0x805E0000, sector_aligned=True, can_read=True, reboot="text"),
}
KNOWN_SHA256 = {
    "757776d0055048262ef92bd04a9f8cbad13647ec4f5c1f59494489a88d571129": ("kflash 1.1.6 (PyPI)", "vowstar"),
    "03837e34ba96e603011ab741844b5f8d2e44c6bdf58ae643c9e1fd15efafccea": ("sipeed kflash 0.8.3", "sipeed"),
    "302db794751a88ec0385d929188717dfb721a45614b17cf7030d4363295c98e4": ("kendryte kflash 2019", "sipeed"),
    "ce34de96e117efe95edb17132788489767e10d560db1cd12e8073423351f617a": ("Kendryte Windows isp_flash.bin", "sipeed"),
    "65057a7454fde7f333f8aa5fed3105bbd39ba0ba94016a9e8291582dccf5fc79": ("ktool stub", "ktool"),
}


@dataclass(frozen=True)
class FlashProgram:
    data: bytes
    origin: str
    label: str
    dialect: Dialect

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def identify(data: bytes, origin: str, dialect: str | None = None) -> FlashProgram:
    """Name the program by its SHA-256; `dialect` overrides (needed for programs this table does not know)."""
    label, known = KNOWN_SHA256.get(hashlib.sha256(data).hexdigest(), ("unknown program", "vowstar"))
    chosen = dialect or known
    if chosen not in DIALECTS:
        raise PipelineError(f"unknown stub dialect {chosen!r}", field="--stub-dialect", expected=", ".join(DIALECTS))
    return FlashProgram(data, origin, label, DIALECTS[chosen])


def kflash_program() -> tuple[bytes, str]:
    """Decode ISP_PROG (a hex string of zlib data inside KFlash.process) from the installed kflash module."""
    spec = importlib.util.find_spec("kflash")
    if spec is None or not spec.origin:
        raise PipelineError("no flash-stage program: the kflash package is not installed", field="--isp-prog",
                            expected="`pip install kflash==1.1.6` or --isp-prog FILE")
    source = Path(spec.origin).read_text(encoding="utf-8", errors="replace")
    for node in ast.walk(ast.parse(source)):
        named = isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ISP_PROG"
                                                     for t in node.targets)
        if named and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            try:
                return zlib.decompress(binascii.unhexlify(node.value.value)), spec.origin
            except (binascii.Error, zlib.error) as exc:
                raise PipelineError(f"ISP_PROG cannot be decoded: {exc}", path=spec.origin) from exc
    raise PipelineError("no ISP_PROG hex literal found", path=spec.origin, expected="kflash 1.1.6 or --isp-prog FILE")


def load_flash_program(path: Path | None = None, dialect: str | None = None) -> FlashProgram:
    """The program from `path` when given, else from the installed kflash package."""
    if path is not None:
        path = Path(path)
        if not path.is_file() or path.stat().st_size == 0:
            raise PipelineError("flash-stage program not found or empty", path=path, field="--isp-prog")
        if path.stat().st_size > SRAM_BYTES:
            raise PipelineError("larger than the 6 MiB of SRAM", path=path, field="--isp-prog")
        return identify(path.read_bytes(), str(path), dialect)
    data, origin = kflash_program()
    return identify(data, origin, dialect)
