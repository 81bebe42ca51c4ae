"""The K210 firmware image format, flash read-back, and .kfpkg reading/writing with its refusals."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import pytest

from deploy.isp.image import FLAG_DIO, firmware_image, parse_firmware_image, read_flash_firmware, read_flash_region
from deploy.isp.kfpkg import FlashEntry, read_kfpkg, write_kfpkg
from pipeline.errors import PipelineError


def test_firmware_image_layout() -> None:
    payload = bytes(range(256)) * 3
    image = firmware_image(payload)
    assert image[0] == FLAG_DIO and struct.unpack_from("<I", image, 1)[0] == len(payload)
    assert image[5:5 + len(payload)] == payload
    assert image[-32:] == hashlib.sha256(image[:-32]).digest() and len(image) == len(payload) + 37
    parsed = parse_firmware_image(image + b"\xff" * 100)
    assert parsed.payload == payload and parsed.size == len(image)


@pytest.mark.parametrize(("offset", "field"), [(0, "flags"), (4, "length"), (10, "sha256"), (-1, "sha256")])
def test_firmware_image_damage_is_named(offset: int, field: str) -> None:
    image = bytearray(firmware_image(b"\x55" * 64))
    image[offset] ^= 0x40
    with pytest.raises(PipelineError, match=field):
        parse_firmware_image(bytes(image))


def test_read_back_from_flash_image(tmp_path: Path) -> None:
    flash = bytearray(b"\xff" * (1 << 20))
    image = firmware_image(b"app" * 100)
    flash[:len(image)] = image
    flash[0x80000:0x80004] = b"KMDL"
    path = tmp_path / "flash.img"
    path.write_bytes(bytes(flash))
    assert read_flash_firmware(path).payload == b"app" * 100
    assert read_flash_region(path, 0x80000, 4) == b"KMDL"
    with pytest.raises(PipelineError, match="outside"):
        read_flash_region(path, (1 << 20) - 2, 4)
    path.write_bytes(b"\xff" * 4096)
    with pytest.raises(PipelineError):
        read_flash_firmware(path)


def _package(path: Path, listing: str | dict, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("flash-list.json", listing if isinstance(listing, str) else json.dumps(listing))
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_kfpkg_round_trip_and_kflash_bare_hex(tmp_path: Path) -> None:
    entries = [FlashEntry("fw.bin", 0, b"\x13" * 5000, True), FlashEntry("m.kmodel", 0x300000, b"\x42" * 777, False)]
    write_kfpkg(tmp_path / "a.kfpkg", entries)
    assert read_kfpkg(tmp_path / "a.kfpkg") == entries
    listing = ('{"version": "0.1.0", "files": [{"address": 0x00A00000, "bin": "font.bin", "sha256Prefix": false},'
               ' {"sha256Prefix": false, "bin": "b.bin", "address": "0x1000"}]}')
    read = read_kfpkg(_package(tmp_path / "b.kfpkg", listing, {"font.bin": b"F" * 10, "b.bin": b"B" * 10}))
    assert [(e.address, e.name) for e in read] == [(0xA00000, "font.bin"), (0x1000, "b.bin")]


def _listing(*files: dict) -> dict:
    return {"version": "0.1.0", "files": list(files)}


@pytest.mark.parametrize(("listing", "members", "message"), [
    ('{"version": "0.1.0", "files": [', {}, "not valid JSON"),
    (_listing({"address": 0, "bin": "a", "sha256Prefix": False}, {"address": 0x800, "bin": "b", "sha256Prefix": False}),
     {"a": b"x" * 4096, "b": b"y"}, "not sector aligned"),
    (_listing({"address": 0, "bin": "a", "sha256Prefix": True}, {"address": 0x1000, "bin": "b", "sha256Prefix": False}),
     {"a": b"x" * 4096, "b": b"y"}, "overlaps"),
    (_listing({"address": 0, "bin": "../evil", "sha256Prefix": False}), {"../evil": b"x"}, "escapes"),
    (_listing({"address": 0, "bin": "/etc/passwd", "sha256Prefix": False}), {}, "escapes"),
    (_listing({"address": 0xFFF000, "bin": "a", "sha256Prefix": False}), {"a": b"x" * 8192}, "past the end"),
    (_listing({"address": 0, "bin": "missing", "sha256Prefix": False}), {}, "missing"),
    (_listing({"address": "zero", "bin": "a", "sha256Prefix": False}), {"a": b"x"}, "address"),
    (_listing({"address": 0, "bin": "a"}), {"a": b"x"}, "sha256Prefix"),
    ({"version": "9.9", "files": []}, {}, "version"),
])
def test_bad_kfpkg_refused(tmp_path: Path, listing: str | dict, members: dict[str, bytes], message: str) -> None:
    with pytest.raises(PipelineError, match=message) as error:
        read_kfpkg(_package(tmp_path / "bad.kfpkg", listing, members))
    assert "bad.kfpkg" in str(error.value)


def test_kfpkg_member_larger_than_flash_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.kfpkg"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("flash-list.json", json.dumps(_listing({"address": 0, "bin": "z", "sha256Prefix": False})))
        archive.writestr("z", bytes(17 * 1024 * 1024))
    with pytest.raises(PipelineError, match="flash size"):
        read_kfpkg(path)


def test_kfpkg_not_a_zip_or_wrong_extension(tmp_path: Path) -> None:
    (tmp_path / "x.kfpkg").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="not a zip"):
        read_kfpkg(tmp_path / "x.kfpkg")
    with pytest.raises(PipelineError, match="extension"):
        read_kfpkg(_package(tmp_path / "x.zip", _listing(), {}))


def test_write_kfpkg_refuses_bad_layout_and_leaves_nothing(tmp_path: Path) -> None:
    entries = [FlashEntry("a", 0, b"x" * 5000, False), FlashEntry("b", 0x1000, b"y", False)]
    with pytest.raises(PipelineError, match="overlaps"):
        write_kfpkg(tmp_path / "o.kfpkg", entries)
    assert list(tmp_path.iterdir()) == []
