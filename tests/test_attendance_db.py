"""The enrollment database: its format (deploy/attendance/face_db.py) on its own, and the C twin
(firmware/attendance/face_db.c) on the host over the host port's flash-image storage, driven by tests/c/face_db_check.c:
the bytes it saves are encode_slot's, it loads what Python writes and chooses slots as read_region does, a power cut
after any write call of a save leaves the previous database, a flipped byte is caught by the CRC."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
import subprocess
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from deploy.attendance import face_db as fdb
from deploy.attendance.face_db import (
    DEFAULT_CAPACITY,
    FaceDatabase,
    FaceRecord,
    SlotError,
    SlotState,
    check_name,
    decode_slot,
    encode_slot,
    layout_header,
    read_region,
    region_bytes,
    region_image,
    slot_bytes,
    template_units,
)
from deploy.firmware.boards import HOST, PORT_DIR
from deploy.firmware.k210_headers import write_k210_headers
from hardware.k210 import FLASH_BYTES, FLASH_SECTOR_BYTES
from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]
ATTENDANCE = REPO / "firmware" / "attendance"
DB_SOURCES = tuple(ATTENDANCE / name for name in ("face_db.c", "face_db.h", "crc32.c", "crc32.h"))
DRIVER = Path(__file__).parent / "c" / "face_db_check.c"
REGION_OFFSET = 0x700000
POWER_CUT_EXIT = 3


def random_template(rng: np.random.Generator, size: int) -> np.ndarray:
    """A unit vector in units of 1e-4, as the firmware prints embeddings."""
    v = rng.normal(size=size)
    return np.round(v / np.linalg.norm(v) * 10000).astype(np.int16)


def make_db(size: int = 128, capacity: int = DEFAULT_CAPACITY, people: int = 5, *, sequence: int = 7,
            threshold: int = 5000, seed: int = 0, prefix: str = "id") -> FaceDatabase:
    rng = np.random.default_rng(seed)
    records = tuple(FaceRecord(f"{prefix}{seed}_{i}", int(rng.integers(1, 6)), random_template(rng, size))
                    for i in range(people))
    return FaceDatabase(embedding_size=size, capacity=capacity, threshold_permyriad=threshold, sequence=sequence,
                        records=records)


def two_slots(first: bytes | None, second: bytes | None, size: int) -> bytes:
    """A region of two slots, each given or erased."""
    return b"".join(slot if slot is not None else b"\xff" * size for slot in (first, second))


# --- the format in Python ---

def test_slot_holds_header_and_capacity_records_in_whole_sectors():
    size = slot_bytes(128, DEFAULT_CAPACITY)
    used = fdb.HEADER.size + DEFAULT_CAPACITY * (32 + 4 + 2 * 128)
    assert fdb.HEADER.size == 32 and size % FLASH_SECTOR_BYTES == 0 and used <= size < used + FLASH_SECTOR_BYTES
    assert size == 151552 and region_bytes(128, DEFAULT_CAPACITY) == 2 * size
    assert slot_bytes(7, 3) == FLASH_SECTOR_BYTES


@pytest.mark.parametrize("size, capacity, people", [(128, DEFAULT_CAPACITY, 5), (7, 3, 3), (128, 2, 0)])
def test_round_trip(size, capacity, people):
    db = make_db(size, capacity, people, sequence=0xFFFF_FFFF, threshold=10000)
    slot = encode_slot(db)
    assert len(slot) == slot_bytes(size, capacity)
    end = fdb.HEADER.size + people * fdb.record_bytes(size)
    assert slot[end:] == b"\xff" * (len(slot) - end)
    assert decode_slot(slot) == db
    assert decode_slot(slot[:end], embedding_size=size, capacity=capacity) == db  # the records are enough
    loaded, states = read_region(region_image(db))
    assert loaded == db
    assert states == [SlotState(0, "valid", "", 0xFFFF_FFFF), SlotState(1, "erased", "", None)]


def test_header_is_little_endian_and_crc_is_zlibs_over_header_and_records():
    db = make_db(people=2, sequence=0x01020304, threshold=1234)
    slot = encode_slot(db)
    fields = dict(zip(fdb.HEADER_FIELDS, struct.unpack_from("<IHHHHIIIII", slot), strict=True))
    assert slot[:4] == b"FCDB" and fields["count"] == 2 and fields["sequence"] == 0x01020304
    assert fields["threshold_permyriad"] == 1234 and fields["record_bytes"] == 292
    end = 32 + 2 * 292
    assert fields["crc32"] == zlib.crc32(slot[:28] + b"\0\0\0\0" + slot[32:end])
    assert slot[32:32 + len(db.records[0].name)] == db.records[0].name.encode()
    assert struct.unpack_from("<I", slot, 32 + 32)[0] == db.records[0].photos
    np.testing.assert_array_equal(np.frombuffer(slot, "<i2", 128, 32 + 36), db.records[0].template)


def with_field(slot: bytes, name: str, value: int, *, fix_crc: bool = False) -> bytes:
    """The slot with one header field changed (and the CRC recomputed when asked)."""
    fields = dict(zip(fdb.HEADER_FIELDS, fdb.HEADER.unpack_from(slot), strict=True))
    fields[name] = value
    end = fdb.HEADER.size + min(fields["count"], 8) * fields["record_bytes"]
    if fix_crc:
        fields["crc32"] = zlib.crc32(slot[fdb.HEADER.size:end], zlib.crc32(
            fdb.HEADER.pack(*{**fields, "crc32": 0}.values())))
    return fdb.HEADER.pack(*fields.values()) + slot[fdb.HEADER.size:]


@pytest.mark.parametrize("field, value, reason, sizes", [
    ("magic", 0x12345678, "magic", {}), ("version", 2, "version", {}), ("header_bytes", 36, "size", {}),
    ("record_bytes", 290, "size", {}), ("embedding_size", 64, "size", {"embedding_size": 128}),
    ("capacity", 511, "size", {"capacity": DEFAULT_CAPACITY}), ("count", DEFAULT_CAPACITY + 1, "count", {}),
    ("threshold_permyriad", 10001, "threshold", {}), ("crc32", 0, "crc", {}), ("sequence", 8, "crc", {})])
def test_a_wrong_header_field_is_named(field, value, reason, sizes):
    slot = with_field(encode_slot(make_db()), field, value)
    with pytest.raises(SlotError, match=f"field '{field if reason != 'crc' else 'crc32'}'") as err:
        decode_slot(slot, **sizes)
    assert err.value.reason == reason and fdb.REASONS[reason] in str(err.value)
    assert isinstance(err.value, PipelineError)


def test_a_flipped_record_byte_or_a_short_slot_is_caught():
    slot = bytearray(encode_slot(make_db()))
    slot[32 + 292 * 3 + 100] ^= 0x10
    with pytest.raises(SlotError, match="field 'crc32'.*CRC mismatch"):
        decode_slot(bytes(slot))
    with pytest.raises(SlotError, match="field 'data'.*for 5 records"):
        decode_slot(encode_slot(make_db())[:32 + 292 * 4])
    with pytest.raises(SlotError, match="field 'data'"):
        decode_slot(b"FCDB")


def slot_with_names(names: list[bytes], size: int = 8, capacity: int = 4) -> bytes:
    """A slot with a valid CRC over records whose raw name fields are given (to forge names the writer refuses)."""
    records = b"".join(struct.pack("<32sI", name, 1) + bytes(2 * size) for name in names)
    fields = dict(magic=fdb.MAGIC, version=fdb.VERSION, header_bytes=32, record_bytes=36 + 2 * size,
                  embedding_size=size, capacity=capacity, count=len(names), sequence=1, threshold_permyriad=5000,
                  crc32=0)
    fields["crc32"] = zlib.crc32(records, zlib.crc32(fdb.HEADER.pack(*fields.values())))
    data = fdb.HEADER.pack(*fields.values()) + records
    return data + b"\xff" * (slot_bytes(size, capacity) - len(data))


@pytest.mark.parametrize("raw", [b"ok\0x", b"a" * 32, b"_lead", b"caf\xc3\xa9", b"", b"sp ace"])
def test_a_stored_name_must_follow_the_rule_even_under_a_valid_crc(raw):
    slot = slot_with_names([b"fine", raw])
    with pytest.raises(SlotError, match=r"field 'records\[1\].name'") as err:
        decode_slot(slot)
    assert err.value.reason == "name"
    assert decode_slot(slot_with_names([b"fine", b"also.fine-2"])).records[1].name == "also.fine-2"


@pytest.mark.parametrize("name", ["a", "A0", "id7201", "Jo.Smith-2_b", "9" * 31])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 32, "_x", ".x", "-x", "a b", "a/b", "a\"b", "a\\b", "é", "a,b", "a\n",
                                  None, 7])
def test_bad_names_name_the_field_and_the_rule(name):
    with pytest.raises(PipelineError, match="field 'name'") as err:
        check_name(name)
    assert fdb.NAME_RULE in str(err.value)


def test_duplicate_unknown_and_full_are_refused():
    db = make_db(capacity=3, people=2)
    rng = np.random.default_rng(5)
    with pytest.raises(PipelineError, match="field 'name'.*already enrolled"):
        db.with_record(FaceRecord(db.records[0].name, 1, random_template(rng, 128)))
    full = db.with_record(FaceRecord("third", 2, random_template(rng, 128)))
    assert full.find("third") == 2 and db.find("third") == -1 and len(db.records) == 2  # a copy
    with pytest.raises(PipelineError, match="field 'capacity'.*full"):
        full.with_record(FaceRecord("fourth", 1, random_template(rng, 128)))
    with pytest.raises(PipelineError, match="field 'name'.*not enrolled"):
        full.without("nobody")
    with pytest.raises(PipelineError, match="field 'template'"):
        db.with_record(FaceRecord("short", 1, random_template(rng, 64)))
    left = full.without(db.records[0].name)
    assert [r.name for r in left.records] == [db.records[1].name, "third"]


@pytest.mark.parametrize("kwargs, field", [({"template": np.zeros(4, np.float32)}, "template"),
                                           ({"template": np.array([40000])}, "template"),
                                           ({"photos": -1}, "photos"), ({"name": "no way"}, "name")])
def test_bad_records_are_refused(kwargs, field):
    args = {"name": "x", "photos": 1, "template": np.zeros(4, np.int16), **kwargs}
    with pytest.raises(PipelineError, match=f"field '{field}'"):
        FaceRecord(**args)


@pytest.mark.parametrize("kwargs, field", [({"threshold_permyriad": 10001}, "threshold_permyriad"),
                                           ({"sequence": -1}, "sequence"), ({"embedding_size": 0}, "embedding_size"),
                                           ({"capacity": 0}, "capacity"), ({"capacity": 100_000}, "capacity"),
                                           ({"capacity": 2}, "count")])
def test_bad_databases_are_refused(kwargs, field):
    db = make_db(people=3)
    with pytest.raises(PipelineError, match=f"field '{field}'"):
        dataclasses.replace(db, **kwargs)


@pytest.mark.parametrize("seq0, seq1, used", [(5, 6, 1), (6, 5, 0), (0xFFFF_FFFF, 0, 1), (0, 0xFFFF_FFFF, 0),
                                              (0x7FFF_FFFF, 0x8000_0000, 1), (3, 0x8000_0003, 0)])
def test_newest_valid_slot_is_used_across_the_sequence_wrap(seq0, seq1, used):
    a, b = make_db(sequence=seq0, seed=1), make_db(sequence=seq1, seed=2)
    loaded, states = read_region(encode_slot(a) + encode_slot(b))
    assert loaded == (a, b)[used]
    assert [s.sequence for s in states] == [seq0, seq1] and {s.state for s in states} == {"valid"}


def test_erased_invalid_and_corrupt_regions():
    size = slot_bytes(128, DEFAULT_CAPACITY)
    good = encode_slot(make_db())
    bad = with_field(good, "version", 9)
    assert read_region(two_slots(None, None, size)) == (None, [SlotState(0, "erased", "", None),
                                                               SlotState(1, "erased", "", None)])
    loaded, states = read_region(two_slots(bad, good, size), embedding_size=128, capacity=DEFAULT_CAPACITY)
    assert loaded == make_db() and states[0] == SlotState(0, "invalid", "bad version", None)
    loaded, states = read_region(two_slots(None, bad, size))
    assert loaded is None and [s.state for s in states] == ["erased", "invalid"]
    with pytest.raises(PipelineError, match="field 'data'"):
        read_region(good)  # one slot is not a region
    with pytest.raises(PipelineError, match="field 'data'"):
        read_region(good + good, embedding_size=128, capacity=16)


def test_a_slot_of_other_sizes_is_invalid_where_the_region_is_read_without_sizes():
    other = encode_slot(make_db(64, 100))
    size = slot_bytes(128, DEFAULT_CAPACITY)
    loaded, states = read_region(two_slots(other + b"\xff" * (size - len(other)), None, size))
    assert loaded is None and states[0] == SlotState(0, "invalid", "bad size", None)


def reference_mean(column: np.ndarray) -> int:
    """The exact mean rounded half away from zero, by rational arithmetic."""
    mean = Fraction(int(column.astype(np.int64).sum()), len(column))
    magnitude = int(abs(mean) + Fraction(1, 2))  # floor of |mean| + 1/2
    return magnitude if mean >= 0 else -magnitude


def test_template_is_the_mean_rounded_half_away_from_zero():
    rng = np.random.default_rng(3)
    cases = [rng.integers(-10000, 10001, (n, 64)) for n in (1, 2, 3, 4, 5, 7, 16)]
    cases.append(np.array([[1, -1, 3, -3, 0, 5], [0, 0, 0, 0, 0, -4]]))  # exact ties of both signs
    cases.append(np.array([[32767] * 3, [32767] * 3, [32766] * 3]))
    halves = 0
    for units in cases:
        got = template_units(units)
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, [reference_mean(units[:, j]) for j in range(units.shape[1])])
        sums, n = units.sum(axis=0), units.shape[0]
        halves += int(np.sum((2 * sums % n == 0) & (sums % n != 0)))
    assert halves > 10  # the sample holds many exact halves


@pytest.mark.parametrize("units", [np.zeros((0, 4), np.int32), np.zeros(4, np.int32), np.zeros((2, 3)),
                                   np.full((2, 3), 40000)])
def test_template_refuses_what_is_not_n_embeddings(units):
    with pytest.raises(PipelineError, match="field 'embeddings'"):
        template_units(units)


def header_numbers(text: str) -> dict[str, int | str]:
    values: dict[str, int | str] = {name: int(v) for name, v in re.findall(r"#define (FACE_DB_\w+) (\d+)u\n", text)}
    values.update(re.findall(r'#define (FACE_DB_\w+) "([^"]*)"', text))
    return values


def test_layout_header_carries_the_format():
    d = header_numbers(layout_header(128, DEFAULT_CAPACITY, REGION_OFFSET, 4500))
    assert d["FACE_DB_MAGIC"] == int.from_bytes(b"FCDB", "little") and d["FACE_DB_VERSION"] == fdb.VERSION
    assert (d["FACE_DB_HEADER_BYTES"], d["FACE_DB_RECORD_BYTES"], d["FACE_DB_NAME_BYTES"]) == (32, 292, 32)
    assert d["FACE_DB_SLOT_BYTES"] == slot_bytes(128, DEFAULT_CAPACITY) and d["FACE_DB_CAPACITY"] == 512
    assert d["FACE_DB_REGION_OFFSET"] == REGION_OFFSET and d["FACE_DB_DEFAULT_THRESHOLD"] == 4500
    assert d["FACE_DB_WRITE_CHUNK"] == 512 and d["FACE_DB_NAME_RULE"] == fdb.NAME_RULE
    packed = fdb.HEADER.pack(*range(1, 11))  # each field's value is its position
    for i, name in enumerate(fdb.HEADER_FIELDS):
        offset, width = d[f"FACE_DB_HDR_{name.upper()}"], d[f"FACE_DB_HDR_{name.upper()}_BYTES"]
        assert int.from_bytes(packed[offset:offset + width], "little") == i + 1
    assert [d[f"FACE_DB_REC_{f}"] for f in ("NAME", "PHOTOS", "TEMPLATE")] == [0, 32, 36]
    assert {d[f"FACE_DB_REASON_{k.upper()}"] for k in fdb.REASONS} == set(fdb.REASONS.values())


@pytest.mark.parametrize("args, field", [((128, 512, 0x700100, 5000), "region_offset"),
                                         ((128, 512, FLASH_BYTES - 4096, 5000), "region_offset"),
                                         ((128, 512, 0, 10001), "threshold_permyriad"),
                                         ((0, 512, 0, 5000), "embedding_size"), ((128, 0, 0, 5000), "capacity")])
def test_layout_header_refuses_what_the_flash_cannot_hold(args, field):
    with pytest.raises(PipelineError, match=f"field '{field}'"):
        layout_header(*args)


def test_every_face_db_name_the_c_sources_use_is_generated():
    text = "\n".join(p.read_text() for p in DB_SOURCES)
    code = re.sub(r'/\*.*?\*/|"(?:\\.|[^"\\\n])*"|#define HDR_\w+\(.*', " ", text, flags=re.S)
    own = set(re.findall(r"#define (\w+)", code)) | set(re.findall(r"\b(FACE_DB_\w+)\s*[=,]", code)) | \
        set(re.findall(r"\b(FACE_DB_SLOT_\w+)\b", code))
    used = set(re.findall(r"\b(FACE_DB_[A-Z0-9_]+)\b", code))
    used |= {f"FACE_DB_HDR_{f}{part}" for f in re.findall(r"HDR_(?:GET|PUT)\(\w+, (\w+)", code) for part in ("",
                                                                                                        "_BYTES")}
    generated = set(header_numbers(layout_header(128, DEFAULT_CAPACITY, 0, 5000)))
    missing = sorted(used - generated - own)
    assert not missing, f"face_db C sources use names face_db_layout.h does not define: {missing}"


def test_face_db_console_lines_fit_one_rt_kprintf_buffer():
    """No float conversions, and every line within RT_CONSOLEBUF_SIZE (bsp/k210's 128, as the host shim) at the
    widest values (the longest reason for each %s)."""
    from tests.test_k210_port import KPRINTF, widest_message

    size = int(re.search(r"#define RT_CONSOLEBUF_SIZE (\d+)", (PORT_DIR / "rtthread.h").read_text()).group(1))
    longest = max(map(len, fdb.REASONS.values()))
    calls = KPRINTF.findall((ATTENDANCE / "face_db.c").read_text())
    for call in calls:
        fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', call))
        assert "%f" not in fmt and widest_message(fmt.replace("%s", "x" * longest)) < size, fmt
    assert len(calls) >= 5


# --- the C twin on the host ---

class Driver:
    """tests/c/face_db_check.c built for one layout; runs scripts against a flash-image file."""

    def __init__(self, program: Path, size: int, capacity: int):
        self.program, self.size, self.capacity = program, size, capacity
        self.slot = slot_bytes(size, capacity)

    def run(self, storage: Path | str, lines: list[str], tmp: Path, expect_exit: int = 0) -> tuple[list[dict], str]:
        script = tmp / "script.txt"
        script.write_text("\n".join(lines) + "\n")
        proc = subprocess.run([str(self.program), str(storage), str(script)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == expect_exit, proc.stdout + proc.stderr
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        console = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("{"))
        return results, console

    def region(self, storage: Path) -> bytes:
        with open(storage, "rb") as f:
            f.seek(REGION_OFFSET)
            return f.read(2 * self.slot)

    def storage_with(self, path: Path, region: bytes) -> Path:
        return flash_image_with(path, region)


def flash_image_with(path: Path, region: bytes) -> Path:
    """A whole flash image, erased but for the database region."""
    image = bytearray(b"\xff" * FLASH_BYTES)
    image[REGION_OFFSET:REGION_OFFSET + len(region)] = region
    path.write_bytes(bytes(image))
    return path


def add_line(record: FaceRecord) -> str:
    return f"add {record.name} {record.photos} " + " ".join(map(str, record.template.tolist()))


@pytest.fixture(scope="module", params=[(128, DEFAULT_CAPACITY), (7, 3)], ids=["e128x512", "e7x3"])
def driver(request, tmp_path_factory) -> Driver:
    if shutil.which(HOST.cc) is None:
        pytest.skip(f"{HOST.cc} not installed (invoke setup)")
    size, capacity = request.param
    out = tmp_path_factory.mktemp(f"face_db_{size}x{capacity}")
    (out / "face_db_layout.h").write_text(layout_header(size, capacity, REGION_OFFSET, 5000))
    write_k210_headers(out)
    sources = [DRIVER, ATTENDANCE / "face_db.c", ATTENDANCE / "crc32.c", PORT_DIR / "host" / "storage_host.c",
               PORT_DIR / "common" / "rt_port_core.c"]
    includes = [f"-I{d}" for d in (out, ATTENDANCE, PORT_DIR, PORT_DIR / "host")]
    subprocess.run([HOST.cc, *HOST.cflags, *includes, *map(str, sources), "-o", str(out / "face_db_check")],
                   check=True, capture_output=True, text=True)
    return Driver(out / "face_db_check", size, capacity)


def db_of(results: list[dict], op: str = "records") -> list[dict]:
    return [r for r in results if r["op"] == op][-1]["records"]


def as_rows(db: FaceDatabase) -> list[dict]:
    return [{"name": r.name, "photos": r.photos, "template": r.template.tolist()} for r in db.records]


def test_c_saves_the_bytes_encode_slot_gives(driver, tmp_path):
    db = make_db(driver.size, driver.capacity, min(3, driver.capacity), sequence=1, threshold=4321)
    storage = tmp_path / "flash.img"
    results, console = driver.run(storage, ["load", "threshold 4321", *map(add_line, db.records), "save"], tmp_path)
    assert "face_db: empty (both slots erased)" in console
    assert results[-1] == {"op": "save", "rc": 0, "text": "ok", "slot": 0, "sequence": 1, "count": len(db.records)}
    region = driver.region(storage)
    assert region == encode_slot(db) + b"\xff" * driver.slot
    second = db.without(db.records[0].name)
    results, console = driver.run(storage, ["load", f"remove {db.records[0].name}", "save"], tmp_path)
    assert results[-1]["slot"] == 1 and results[-1]["sequence"] == 2
    assert driver.region(storage) == encode_slot(db) + encode_slot(dataclasses.replace(second, sequence=2))
    assert f"face_db: slot 0 (sequence 1) in use, {len(db.records)} of {driver.capacity} people, threshold 0.4321" \
        in console


def test_c_loads_what_python_writes(driver, tmp_path):
    db = make_db(driver.size, driver.capacity, driver.capacity if driver.capacity < 10 else 9, sequence=41,
                 threshold=10000)
    storage = driver.storage_with(tmp_path / "flash.img", region_image(db))
    results, console = driver.run(storage, ["load", "records"], tmp_path)
    assert results[0]["used"] == 0 and results[0]["sequence"] == 41 and results[0]["threshold"] == 10000
    assert db_of(results) == as_rows(db)
    assert f"face_db: slot 0 (sequence 41) in use, {len(db.records)} of {driver.capacity} people, threshold 1.0000" \
        in console


def test_c_refuses_what_python_refuses(driver, tmp_path):
    db = make_db(driver.size, driver.capacity, min(2, driver.capacity), sequence=3)
    storage = tmp_path / "flash.img"
    extra = FaceRecord("extra", 1, np.zeros(driver.size, np.int16))
    full = [add_line(FaceRecord(f"p{i}", 1, np.zeros(driver.size, np.int16))) for i in range(driver.capacity - 2)]
    results, _ = driver.run(storage, [*map(add_line, db.records), f"add {db.records[0].name} 1 " +
                                      " ".join(["0"] * driver.size), "check _bad", "check " + "x" * 32,
                                      "check Good.name-1_", f"find {db.records[1].name}", "find nobody",
                                      "remove nobody", *full, add_line(extra)], tmp_path)
    rcs = [r.get("rc", r.get("index")) for r in results]
    assert rcs[:9] == [0, 0, -3, -5, -5, 0, 1, -1, -4] and rcs[-1] == -2
    assert results[-1]["text"] == "the database is full" and results[-1]["count"] == driver.capacity


def c_report(results: list[dict]) -> tuple[int, list[tuple[str, str, int]]]:
    load = [r for r in results if r["op"] == "load"][-1]
    return load["used"], [(s["state"], s["reason"], s["sequence"]) for s in load["slots"]]


def python_report(region: bytes, driver: Driver) -> tuple[FaceDatabase | None, list[tuple[str, str, int]]]:
    db, states = read_region(region, embedding_size=driver.size, capacity=driver.capacity)
    return db, [(s.state, s.reason, s.sequence or 0) for s in states]


def test_c_chooses_slots_as_read_region_does(driver, tmp_path):
    people = min(2, driver.capacity)
    slots = {seq: encode_slot(make_db(driver.size, driver.capacity, people, sequence=seq, seed=seq % 97))
             for seq in (5, 6, 0xFFFF_FFFF, 0, 0x8000_0000)}
    good = slots[5]
    flipped = bytearray(good)
    flipped[40] ^= 1
    other_size = encode_slot(make_db(driver.size + 1, driver.capacity, people))[:driver.slot]
    cases = [(slots[5], slots[6]), (slots[6], slots[5]), (slots[0xFFFF_FFFF], slots[0]), (slots[0], slots[0xFFFF_FFFF]),
             (slots[0], slots[0x8000_0000]), (None, None), (None, slots[6]), (bytes(flipped), slots[5]),
             (slots[6], bytes(flipped)), (bytes(flipped), None), (with_field(good, "magic", 1), None),
             (with_field(good, "count", driver.capacity + 1), with_field(good, "threshold_permyriad", 10001)),
             (other_size, with_field(good, "version", 2))]
    for first, second in cases:
        region = two_slots(first, second, driver.slot)
        storage = driver.storage_with(tmp_path / "flash.img", region)
        results, console = driver.run(storage, ["load", "records"], tmp_path)
        used, states = c_report(results)
        db, want = python_report(region, driver)
        assert states == want
        if db is None:
            assert used == -1 and db_of(results) == []
            if {s[0] for s in states} == {"erased"}:
                assert console == "face_db: empty (both slots erased)"
            else:
                texts = [s[1] or s[0] for s in states]
                assert console == f"face_db: CORRUPT: no valid slot (slot 0: {texts[0]}, slot 1: {texts[1]}); " \
                                  "starting empty"
        else:
            assert used >= 0 and states[used][2] == db.sequence and db_of(results) == as_rows(db)
            other = states[1 - used]
            assert (f"face_db: slot {1 - used} not used: {other[1]}" in console) == (other[0] == "invalid")


def test_a_flipped_byte_in_the_slot_in_use_falls_back_to_the_other(driver, tmp_path):
    older = make_db(driver.size, driver.capacity, min(2, driver.capacity), sequence=3, seed=1)
    newer = make_db(driver.size, driver.capacity, min(3, driver.capacity), sequence=4, seed=2)
    region = bytearray(encode_slot(older) + encode_slot(newer))
    for at in (driver.slot + 20, driver.slot + 32 + 5, driver.slot + 32 + fdb.record_bytes(driver.size) + 40):
        damaged = bytearray(region)
        damaged[at] ^= 0x04
        storage = driver.storage_with(tmp_path / "flash.img", bytes(damaged))
        results, console = driver.run(storage, ["load", "records"], tmp_path)
        assert c_report(results) == (0, [("valid", "", 3), ("invalid", "CRC mismatch", 0)])
        assert db_of(results) == as_rows(older)
        assert "face_db: slot 1 not used: CRC mismatch" in console


def test_a_corrupt_database_is_reported_and_the_next_save_writes_a_fresh_slot(driver, tmp_path):
    db = make_db(driver.size, driver.capacity, 1, sequence=9)
    damaged = bytearray(region_image(db))
    damaged[32 + 3] ^= 0xFF
    storage = driver.storage_with(tmp_path / "flash.img", bytes(damaged))
    person = FaceRecord("fresh", 2, np.arange(driver.size, dtype=np.int16))
    results, console = driver.run(storage, ["load", add_line(person), "save", "load", "records"], tmp_path)
    assert "face_db: CORRUPT: no valid slot (slot 0: CRC mismatch, slot 1: erased); starting empty" in console
    assert results[2]["slot"] == 0 and results[2]["sequence"] == 1
    assert c_report(results) == (0, [("valid", "", 1), ("erased", "", 0)]) and db_of(results) == as_rows(
        FaceDatabase(driver.size, driver.capacity, 5000, 1, (person,)))


def save_writes(driver: Driver, count: int) -> int:
    """Storage write calls of a save of `count` records: one erase per sector, the records in chunks that never cross
    a FACE_DB_WRITE_CHUNK boundary (the first begins after the header), then the header."""
    end = fdb.HEADER.size + count * fdb.record_bytes(driver.size)
    chunks = -(-end // fdb.WRITE_CHUNK) if count else 0
    return driver.slot // FLASH_SECTOR_BYTES + chunks + 1


def test_a_power_cut_after_any_write_of_a_save_leaves_the_previous_database(driver, tmp_path):
    """The cut comes after k write calls, for every k of one save; every run goes on from what the cut left."""
    before = make_db(driver.size, driver.capacity, min(2, driver.capacity), sequence=7, threshold=4000)
    person = FaceRecord("newcomer", 3, np.full(driver.size, -7, np.int16))
    after = dataclasses.replace(before.without(before.records[0].name).with_record(person), sequence=8,
                              threshold_permyriad=6000)
    storage = driver.storage_with(tmp_path / "flash.img", region_image(before))
    change = ["load", f"remove {before.records[0].name}", add_line(person), "threshold 6000"]
    total = save_writes(driver, len(after.records))
    for k in range(1, total + 1):
        _, console = driver.run(storage, [*change, f"fault {k}", "save"], tmp_path, expect_exit=POWER_CUT_EXIT)
        assert console.endswith(f"face_db: power cut (test hook) after {k} writes")
        results, console = driver.run(storage, ["load", "records"], tmp_path)
        region = driver.region(storage)
        assert c_report(results)[1] == python_report(region, driver)[1]
        erases = slot_bytes(driver.size, driver.capacity) // FLASH_SECTOR_BYTES  # the save's first write calls
        if k < total:  # the header comes last: the new slot is not valid yet; once records are written under its
            # erased header, the slot says the save was interrupted
            other = ("erased", "", 0) if k <= erases else ("invalid", fdb.REASONS["interrupted"], 0)
            assert c_report(results) == (0, [("valid", "", 7), other]), k
            assert db_of(results) == as_rows(before) and results[0]["threshold"] == 4000
        else:
            assert c_report(results) == (1, [("valid", "", 7), ("valid", "", 8)])
            assert region == encode_slot(before) + encode_slot(after)
    # one write more than a save makes: the hook is not reached and the save completes
    storage = driver.storage_with(tmp_path / "flash.img", region_image(before))
    results, _ = driver.run(storage, [*change, f"fault {total + 1}", "save", "save"], tmp_path)
    assert [r["sequence"] for r in results if r["op"] == "save"] == [8, 9]  # the hook armed only the first


def test_template_rounding_in_c_matches_python(driver, tmp_path):
    rng = np.random.default_rng(11)
    lines, expected = [], []
    for n in (1, 2, 3, 4, 6, 9, 10):
        units = rng.integers(-10000, 10001, (n, driver.size))
        units[:, 0] = [1] + [0] * (n - 1)  # a sum of 1: an exact half for n = 2
        units[:, -1] = [-1] + [0] * (n - 1)
        lines.append(f"template {n} " + " ".join(map(str, units.sum(axis=0).tolist())))
        expected.append(template_units(units).tolist())
    results, _ = driver.run("-", lines, tmp_path)
    assert [r["template"] for r in results] == expected


def test_host_storage_behaves_like_nor_flash(driver, tmp_path):
    storage = tmp_path / "flash.img"
    results, console = driver.run(storage, ["poke 0x1000 0x5a", "poke 0x1000 0x58", "poke 0x1000 0x5b",
                                            "peek 0x1000", "erase 0x1000 4096", "peek 0x1000", "erase 0x1001 4096",
                                            "erase 0xfff000 8192", f"peek {FLASH_BYTES}"], tmp_path)
    assert [(r["rc"], r["byte"]) for r in results] == [(0, 0x5A), (0, 0x58), (-1, 0x5B), (0, 0x58), (0, 0),
                                                       (0, 0xFF), (-1, 0), (-1, 0), (-1, 0)]
    assert "storage write at 0x1000 would set bits of a programmed byte (erase first)" in console
    assert "is not whole 4096-byte sectors" in console and "is past the flash" in console
    assert storage.stat().st_size == FLASH_BYTES


def test_without_a_flash_image_storage_fails_with_a_message(driver, tmp_path):
    results, console = driver.run("-", ["load", "add x 1 " + " ".join(["0"] * driver.size), "save"], tmp_path)
    assert c_report(results) == (-1, [("invalid", "read error", 0)] * 2)
    assert "board: no flash image for storage read (run with --storage FILE)" in console
    assert "face_db: CORRUPT: no valid slot (slot 0: read error, slot 1: read error); starting empty" in console
    assert results[-1]["rc"] == -1 and results[-1]["text"] == "flash storage error" and results[-1]["slot"] == -1


def test_a_file_that_is_not_a_flash_image_is_refused(driver, tmp_path):
    (tmp_path / "small.img").write_bytes(b"\xff" * 4096)
    (tmp_path / "s.txt").write_text("load\n")
    proc = subprocess.run([str(driver.program), str(tmp_path / "small.img"), str(tmp_path / "s.txt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "is not a flash image (4096 bytes, expected 16777216)" in proc.stderr


# --- on real RT-Thread in QEMU: the virtio-blk flash store (firmware/port/rtt_qemu/storage_rtt_qemu.c) ---

QEMU_TOOLS = ("riscv64-unknown-elf-gcc", "qemu-system-riscv64", "scons")
MSH_COMMAND = Path(__file__).parent / "c" / "face_db_msh.c"
SCRATCH = 0xF00000  # tests/c/face_db_msh.c's FDB_SCRATCH


@pytest.fixture(scope="module")
def qemu_fdb(tmp_path_factory) -> Path:
    """bsp/qemu-virt64-riscv with the QEMU board port (face_port/) and a component holding face_db.c and the msh
    command `fdb` (tests/c/face_db_msh.c); the image."""
    from deploy.firmware.boards import BSP_TARGETS
    from deploy.firmware.memory_map import memory_map_header
    from deploy.firmware.rtthread_build import install_port, prepare_bsp_copy, run_scons
    from deploy.firmware.rtthread_tree import find_toolchain
    from tests.conftest import rtthread_root

    if any(shutil.which(tool) is None for tool in QEMU_TOOLS):
        pytest.skip(f"{' / '.join(QEMU_TOOLS)} not installed (invoke setup)")
    root = rtthread_root()
    target = BSP_TARGETS["qemu"]
    toolchain = find_toolchain(target.bsp_prefix)
    bsp = tmp_path_factory.mktemp("fdb_qemu") / "bsp"
    bsp.mkdir()
    prepare_bsp_copy(target, root, toolchain, bsp)
    install_port(target, toolchain, bsp, {"memory_map.h": memory_map_header()})
    component = bsp / "face_db_test"
    component.mkdir()
    for source in (*DB_SOURCES, MSH_COMMAND):
        shutil.copy2(source, component / source.name)
    (component / "face_db_layout.h").write_text(layout_header(128, DEFAULT_CAPACITY, REGION_OFFSET, 5000))
    write_k210_headers(component)
    (component / "SConscript").write_text("from building import *\ncwd = GetCurrentDir()\ngroup = DefineGroup("
                                          "'face_db_test', Glob('*.c'), depend=[''], CPPPATH=[cwd])\n"
                                          "Return('group')\n")
    run_scons(bsp, root, toolchain, jobs=2)
    return bsp / "rtthread.bin"


class QemuBoard:
    """RT-Thread in QEMU with `flash` attached as virtio-blk0 (as the run script attaches the flash image)."""

    def __init__(self, image: Path, flash: Path):
        import pexpect

        from deploy.firmware.run import qemu_command

        cmd = qemu_command(image, [], count_instructions=False) + [
            "-drive", f"if=none,file={flash},format=raw,id=flash0", "-device", "virtio-blk-device,drive=flash0"]
        self.child = pexpect.spawn(cmd[0], cmd[1:], encoding="utf-8", echo=False, timeout=60)
        self.child.expect_exact("msh />")

    def run(self, line: str) -> tuple[list[dict], str]:
        """Type `line`; its JSON lines and its other console lines."""
        self.child.send(line + "\r")
        self.child.expect_exact("msh />")
        lines = [x.strip() for x in self.child.before.replace("\r", "").split("\n")[1:] if x.strip()]
        return [json.loads(x) for x in lines if x.startswith("{")], "\n".join(x for x in lines if x[0] != "{")

    def cut(self, line: str) -> str:
        """Type `line`, which ends in the power-cut hook; the board is then switched off."""
        self.child.send(line + "\r")
        self.child.expect(r"face_db: power cut \(test hook\) after \d+ writes")
        return self.child.after

    def close(self) -> None:
        self.child.terminate(force=True)


def seeded_template(seed: int, size: int = 128) -> np.ndarray:
    """tests/c/face_db_msh.c's `add` template."""
    i = np.arange(size, dtype=np.uint64)
    return ((np.uint64(seed + 1) * (i + 3) * np.uint64(7919)) % np.uint64(1 << 32) % np.uint64(20001)).astype(
        np.int64) - 10000


def loaded(results: list[dict]) -> tuple[int, list[tuple[str, str, int]]]:
    return results[-1]["used"], [(s["state"], s["reason"], s["sequence"]) for s in results[-1]["slots"]]


@pytest.mark.slow
def test_qemu_flash_store_keeps_the_database_across_reboots_and_power_cuts(qemu_fdb, tmp_path):
    slot = slot_bytes(128, DEFAULT_CAPACITY)
    before = make_db(sequence=7, threshold=4000, people=3)
    after = dataclasses.replace(before.without(before.records[0].name).with_record(
        FaceRecord("newcomer", 3, seeded_template(5))), sequence=8, threshold_permyriad=6000)
    flash = flash_image_with(tmp_path / "flash.img", region_image(before))
    board = QemuBoard(qemu_fdb, flash)
    try:
        results, console = board.run("fdb storage")  # unaligned block I/O, the window, range checks
        assert results == [{"op": "storage", "erase": 0, "write": 0, "read": 0, "read_equal": 1, "window_equal": 1,
                            "unaligned": -1, "past": -1}]
        assert "not whole 4096-byte sectors" in console and "past the flash image" in console
        results, console = board.run("fdb load")
        assert loaded(results) == (0, [("valid", "", 7), ("erased", "", 0)])
        assert console == "face_db: slot 0 (sequence 7) in use, 3 of 512 people, threshold 0.4000"
        for line in (f"fdb remove {before.records[0].name}", "fdb add newcomer 3 5", "fdb threshold 6000"):
            board.run(line)
        assert board.run("fdb save")[0][0]["sequence"] == 8
    finally:
        board.close()
    image = flash.read_bytes()
    assert image[REGION_OFFSET:REGION_OFFSET + 2 * slot] == encode_slot(before) + encode_slot(after)
    assert image[SCRATCH + 300:SCRATCH + 1000] == bytes((i * 13 + 5) & 0xFF for i in range(700))
    assert image[SCRATCH + 1000:SCRATCH + 8192] == b"\xff" * (8192 - 1000)

    damaged = bytearray(image)
    damaged[REGION_OFFSET + slot + 32 + 10] ^= 0x01  # the newest slot's first record
    flash.write_bytes(bytes(damaged))
    board = QemuBoard(qemu_fdb, flash)
    try:
        results, console = board.run("fdb load")
        assert loaded(results) == (0, [("valid", "", 7), ("invalid", "CRC mismatch", 0)])
        assert console.splitlines()[1] == "face_db: slot 1 not used: CRC mismatch"
    finally:
        board.close()

    flash.write_bytes(image)  # repaired: the newest slot is used again; cut a save in the middle of its records
    cut_after = slot // FLASH_SECTOR_BYTES + 1
    board = QemuBoard(qemu_fdb, flash)
    try:
        results, _ = board.run("fdb load")
        assert loaded(results) == (1, [("valid", "", 7), ("valid", "", 8)])
        board.run("fdb remove newcomer")
        board.run(f"fdb fault {cut_after}")
        assert board.cut("fdb save").endswith(f"after {cut_after} writes")
    finally:
        board.close()
    assert read_region(flash.read_bytes()[REGION_OFFSET:REGION_OFFSET + 2 * slot])[0] == after
    board = QemuBoard(qemu_fdb, flash)  # the reboot after the power cut
    try:
        results, console = board.run("fdb load")
        interrupted = fdb.REASONS["interrupted"]  # the cut came after the erase, while records were written
        assert loaded(results) == (1, [("invalid", interrupted, 0), ("valid", "", 8)])
        assert console == ("face_db: slot 1 (sequence 8) in use, 3 of 512 people, threshold 0.6000\n"
                           f"face_db: slot 0 not used: {interrupted}")
        records, _ = board.run("fdb records")
        assert [(r["name"], r["photos"], r["template_sum"]) for r in records] == [
            (r.name, r.photos, int(r.template.astype(np.int64).sum())) for r in after.records]
    finally:
        board.close()
