"""`.kfpkg` packages (zip + flash-list.json, kflash compatible) and the flash layout checks shared by every write."""

from __future__ import annotations

import json
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.isp.image import BOOT_SRAM_LIMIT, FLASH_SIZE, firmware_image
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError

LIST_NAME = "flash-list.json"
VERSIONS = ("0.1.0", "0.1.1")
SECTOR = 4096
MAX_LIST_BYTES = 1 << 20
_BARE_HEX_ADDRESS = re.compile(r'("address"\s*:\s*)(0[xX][0-9a-fA-F]+)')


@dataclass(frozen=True)
class FlashEntry:
    """One thing to write: `data` at `address`; bootable entries are wrapped in the firmware image format."""

    name: str
    address: int
    data: bytes
    bootable: bool

    @property
    def wire(self) -> bytes:
        """The exact bytes that land in flash."""
        return firmware_image(self.data) if self.bootable else self.data

    @property
    def end(self) -> int:
        return self.address + len(self.wire)


def check_layout(entries: list[FlashEntry], where: str | Path, flash_size: int = FLASH_SIZE) -> list[str]:
    """Refuse unaligned, out-of-flash or overlapping entries; return warnings (large boot image, data near firmware)."""
    warnings: list[str] = []
    for index, entry in enumerate(entries):
        field = f"files[{index}] ({entry.name})"
        if entry.address % SECTOR:
            raise PipelineError(f"address 0x{entry.address:X} is not sector aligned", path=where, field=field,
                                expected="a multiple of 0x1000")
        if not entry.data:
            raise PipelineError("empty file", path=where, field=field, expected="at least one byte")
        if entry.end > flash_size:
            raise PipelineError(f"0x{entry.address:X}..0x{entry.end:X} runs past the end of flash", path=where,
                                field=field, expected=f"end <= 0x{flash_size:X}")
        if entry.bootable and len(entry.data) > BOOT_SRAM_LIMIT:
            warnings.append(f"{entry.name}: bootable payload of {len(entry.data)} bytes exceeds the 6 MiB the ROM "
                            "can load into SRAM")
    ordered = sorted(enumerate(entries), key=lambda pair: pair[1].address)
    for (i, first), (j, second) in zip(ordered, ordered[1:], strict=False):
        if second.address < first.end:
            raise PipelineError(f"0x{second.address:X}..0x{second.end:X} overlaps files[{i}] ({first.name}) at "
                                f"0x{first.address:X}..0x{first.end:X}", path=where,
                                field=f"files[{j}] ({second.name})", expected="non-overlapping ranges")
    return warnings


def _address(value: Any, where: Path, field: str) -> int:
    if isinstance(value, bool):
        value = None
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            value = None
    if not isinstance(value, int) or value < 0:
        raise PipelineError(f"address {value!r}", path=where, field=field, expected="a non-negative integer or hex")
    return value


def _member_name(value: Any, where: Path, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise PipelineError(f"bin {value!r}", path=where, field=field, expected="a file name inside the package")
    normal = posixpath.normpath(value)
    if "\\" in value or value.startswith("/") or normal.startswith("..") or ":" in value:
        raise PipelineError(f"member name {value!r} escapes the package folder", path=where, field=field,
                            expected="a relative name inside the zip")
    return value


def parse_flash_list(text: str, where: Path) -> list[dict[str, Any]]:
    """Parse flash-list.json, accepting kflash's bare hex addresses; check version and each entry's fields."""
    try:
        listing = json.loads(_BARE_HEX_ADDRESS.sub(r'\1"\2"', text))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{LIST_NAME} is not valid JSON: {exc}", path=where, field=LIST_NAME) from exc
    if not isinstance(listing, dict) or not isinstance(listing.get("files"), list):
        raise PipelineError("no 'files' list", path=where, field=LIST_NAME, expected='{"version", "files": [...]}')
    if listing.get("version") not in VERSIONS:
        raise PipelineError(f"version {listing.get('version')!r}", path=where, field="version",
                            expected=" or ".join(VERSIONS))
    items = []
    for index, item in enumerate(listing["files"]):
        field = f"files[{index}]"
        if not isinstance(item, dict):
            raise PipelineError("not an object", path=where, field=field, expected="{address, bin, sha256Prefix}")
        if not isinstance(item.get("sha256Prefix"), bool):
            raise PipelineError(f"sha256Prefix {item.get('sha256Prefix')!r}", path=where,
                                field=f"{field}.sha256Prefix", expected="true or false")
        if item.get("reverse4Bytes") or item.get("swap"):
            raise PipelineError("4-byte word swapping is not supported", path=where, field=f"{field}.reverse4Bytes",
                                expected="false or absent")
        items.append({"address": _address(item.get("address"), where, f"{field}.address"),
                      "bin": _member_name(item.get("bin"), where, f"{field}.bin"),
                      "bootable": item["sha256Prefix"]})
    return items


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: Path, field: str) -> bytes:
    """A member's bytes, at most `limit`; a bad CRC, a size that differs from the header, an unknown compression,
    encryption or a damaged stream is a PipelineError naming the member."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise PipelineError(f"member {name!r} is encrypted", path=where, field=field, expected="unencrypted members")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise PipelineError(f"member {name!r} uses compression method {info.compress_type}", path=where, field=field,
                            expected="stored or deflated members")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError,
            UnicodeDecodeError) as exc:  # a damaged local header: its file name no longer decodes
        raise PipelineError(f"member {name!r} is damaged ({exc})", path=where, field=field,
                            expected="a member whose data matches its CRC-32 and size") from None
    if len(data) > limit:
        raise PipelineError(f"member {name!r} inflates past {limit} bytes", path=where, field=field)
    if len(data) != info.file_size:
        raise PipelineError(f"member {name!r} holds {len(data)} bytes, its header says {info.file_size}", path=where,
                            field=field, expected="the size the zip header declares")
    return data


def read_kfpkg(path: Path, flash_size: int = FLASH_SIZE) -> list[FlashEntry]:
    """Read and validate a .kfpkg; members are size-checked before they are read (no zip bombs)."""
    path = Path(path)
    if path.suffix != ".kfpkg":
        raise PipelineError("wrong extension", path=path, expected="a .kfpkg file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError, EOFError) as exc:
        raise PipelineError(f"not a zip archive: {exc}", path=path, expected="a kfpkg (zip)") from exc
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        if LIST_NAME not in infos or infos[LIST_NAME].file_size > MAX_LIST_BYTES:
            raise PipelineError(f"no {LIST_NAME} (or larger than 1 MiB) at the root", path=path, field=LIST_NAME)
        listing = _read_member(archive, infos[LIST_NAME], MAX_LIST_BYTES, path, LIST_NAME)
        items = parse_flash_list(listing.decode("utf-8", errors="replace"), path)
        entries = []
        for index, item in enumerate(items):
            info = infos.get(item["bin"])
            field = f"files[{index}].bin"
            if info is None:
                raise PipelineError(f"member {item['bin']!r} is missing", path=path, field=field)
            if info.file_size > flash_size:
                raise PipelineError(f"member {item['bin']!r} is {info.file_size} bytes", path=path, field=field,
                                    expected=f"at most the flash size ({flash_size} bytes)")
            data = _read_member(archive, info, flash_size, path, field)
            entries.append(FlashEntry(item["bin"], item["address"], data, item["bootable"]))
    check_layout(entries, path, flash_size)
    return entries


def write_kfpkg(path: Path, entries: Iterable[FlashEntry], flash_size: int = FLASH_SIZE) -> None:
    """Write a kflash-compatible .kfpkg (layout checked first; the file appears only when complete)."""
    entries = list(entries)
    check_layout(entries, path, flash_size)
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise PipelineError("two entries share a member name", path=path, field="bin", expected="unique names")
    for index, name in enumerate(names):
        _member_name(name, Path(path), f"files[{index}].bin")
    listing = {"version": "0.1.0", "files": [
        {"address": entry.address, "bin": entry.name, "sha256Prefix": entry.bootable} for entry in entries]}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(LIST_NAME, json.dumps(listing, indent=2))
        for entry in entries:
            archive.writestr(entry.name, entry.data)
