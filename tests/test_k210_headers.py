"""The generated C headers (deploy/firmware/k210_headers.py) carry the Python facts, and define every generated name
the C sources use; the byte-exact C-vs-simulator tests (test_firmware_runtime.py) prove the values at work."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from deploy.firmware.boards import KPU_KERNELS, rounding_flags
from deploy.firmware.k210_board import K210_CAMERAS, k210_board_header
from deploy.firmware.k210_headers import body_offsets, write_k210_headers
from deploy.k210.format import kmodel as km
from hardware import k210

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
GENERATED_PREFIXES = ("KPU_REG_", "KPU_BN_", "KPU_ACT_", "KPU_POOL_", "KMODEL_", "KL_", "KACT_", "K210_", "KPU_")


def _names(text: str) -> dict[str, int | None]:
    """Macros (#define NAME ...) and enum members of C text, with their integer value where it is a literal."""
    names: dict[str, int | None] = {}
    for name, value in re.findall(r"#define (\w+)(?:[ \t]+(\d+)u?\b)?", text):
        names[name] = int(value) if value else None
    for body in re.findall(r"\benum \w+ \{([^}]*)\}", text):
        for name, value in re.findall(r"(\w+)(?:\s*=\s*(\d+))?\s*(?:,|$)", re.sub(r"/\*.*?\*/", "", body, flags=re.S)):
            names[name] = int(value) if value else None
    return names


def _defines(folder: Path) -> dict[str, int | None]:
    return _names("\n".join(p.read_text() for p in write_k210_headers(folder)))


def test_generated_headers_carry_the_python_facts(tmp_path):
    d = _defines(tmp_path)
    assert (d["KPU_RAM_BYTES"], d["K210_SRAM_BYTES"], d["K210_FLASH_BYTES"]) == (2 << 20, 6 << 20, 16 << 20)
    assert (d["K210_FLASH_SECTOR_BYTES"], d["K210_FLASH_PAGE_BYTES"]) == (4096, 256)
    assert d["KPU_RAM_LINES"] * d["KPU_LINE_BYTES"] == d["KPU_RAM_BYTES"]
    for prefix, fields in (("KPU_REG", k210.LAYER_FIELDS), ("KPU_BN", k210.BN_FIELDS),
                           ("KPU_ACT", k210.ACTIVATION_FIELDS)):
        for f in fields:
            name = f"{prefix}_{f.name.upper()}"
            assert (d[f"{name}_WORD"], d[f"{name}_LSB"], d[f"{name}_WIDTH"]) == (f.word, f.lsb, f.width)
    assert {p.name: p.value for p in k210.PoolType} == {n[len("KPU_POOL_"):]: v for n, v in d.items()
                                                       if n.startswith("KPU_POOL_") and n != "KPU_POOL_TYPE_COUNT"}
    assert all(d[f"KL_{t.name}"] == t.value for t in km.BODY_CLASSES)
    assert d["KPU_ACT_TABLE_BYTES"] == k210.ACTIVATION_TABLE_BYTES == 144


def test_body_offsets_follow_the_struct_formats():
    assert body_offsets(km.UploadBody) == [("flags", 0), ("in_addr", 4), ("kpu_out_line", 8), ("width", 12),
                                           ("height", 16), ("channels", 20)]
    for body_class in set(km.BODY_CLASSES.values()) - {km.K210ConvBody}:
        offsets = body_offsets(body_class)
        assert len(offsets) == len(struct.unpack(body_class.FMT, bytes(struct.calcsize(body_class.FMT))))
    assert dict(body_offsets(km.K210ConvBody))["act_offset"] == 20


def test_every_generated_name_the_c_sources_use_is_defined(tmp_path):
    """A name with a generated prefix that the runtime, ports or templates use must be generated or be defined by
    the C sources themselves (so a renamed field or dropped constant fails here, not in a board build)."""
    generated = set(_defines(tmp_path))
    for camera in K210_CAMERAS:  # the K210 board port's generated header (deploy/firmware/k210_board.py)
        generated |= set(_names(k210_board_header(camera)))
    sources = [p for p in FIRMWARE.rglob("*") if p.suffix in (".c", ".h", ".j2", ".in", ".S")]
    text = "\n".join(p.read_text() for p in sources)
    text = re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', " ", text, flags=re.S)  # code only
    switches = [*rounding_flags("v0.1"), *(flag for flags in KPU_KERNELS.values() for flag in flags)]
    own = set(_names(text)) | {flag[2:] for flag in switches}  # plus the builds' -D switches
    used = {name for name in re.findall(r"\b([A-Z][A-Z0-9_]+)\b", text) if name.startswith(GENERATED_PREFIXES)}
    for group, macro in (("KPU_REG", "KPU_REG_GET"), ("KPU_BN", "KPU_BN_GET"), ("KPU_ACT", "KPU_ACT_GET")):
        for field_name in re.findall(rf"\b{macro}\(\w+, (\w+)\)", text):
            used |= {f"{group}_{field_name}_{part}" for part in ("WORD", "LSB", "WIDTH")}
    missing = sorted(used - generated - own)
    assert not missing, f"C sources use names that neither the generated headers nor the sources define: {missing}"
