"""The enrollment database of the attendance firmware, defined once here: a versioned header and fixed-size records
in a flash region of two slots (the newest valid one is used, a save writes the other). The C twin
(firmware/attendance/face_db.c) gets every number and text it needs as the generated face_db_layout.h.

Slot: header (HEADER, little-endian, HEADER_FIELDS), then `count` records (NAME_BYTES of NUL-padded name, u32
photos, int16[embedding_size] template in units of 1e-4), then erased bytes (0xFF) up to slot_bytes(), a whole
number of flash sectors. The CRC-32 (zlib) covers the header with its crc32 field as 0, then the `count` records.
"""

from __future__ import annotations

import dataclasses
import re
import string
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from hardware.k210 import FLASH_BYTES, FLASH_SECTOR_BYTES
from pipeline.errors import PipelineError

MAGIC = int.from_bytes(b"FCDB", "little")
VERSION = 1
NAME_BYTES = 32
NAME_FIRST_CHARS = string.ascii_letters + string.digits
NAME_CHARS = NAME_FIRST_CHARS + "_.-"  # safe in C strings, JSON, CSV and msh arguments
NAME_RULE = f"1 to {NAME_BYTES - 1} characters of A-Z a-z 0-9 _ . -, the first a letter or digit"
DEFAULT_CAPACITY = 512
THRESHOLD_MAX = 10000  # the match threshold is a similarity in permyriad
WRITE_CHUNK = 512  # bytes per storage write call of a save (one block of the QEMU board's virtio disk)
ERASED = 0xFF

HEADER = struct.Struct("<IHHHHIIIII")
HEADER_FIELDS = ("magic", "version", "header_bytes", "record_bytes", "embedding_size", "capacity", "count",
                 "sequence", "threshold_permyriad", "crc32")
RECORD_HEAD = struct.Struct(f"<{NAME_BYTES}sI")  # then the template, int16 x embedding_size
RECORD_FIELDS = ("name", "photos", "template")
TEMPLATE_DTYPE = np.dtype("<i2")
U16_MAX, U32_MAX = 0xFFFF, 0xFFFF_FFFF
# Why a slot is not used; the board prints the same words (FACE_DB_REASON_<KEY> in face_db_layout.h).
REASONS = {
    "read": "read error",  # the board's storage read failed (the host reads bytes it already has)
    "magic": "bad magic",
    "version": "bad version",
    "size": "bad size",  # header or record bytes, embedding size or capacity not what the firmware was built for
    "count": "bad count",
    "threshold": "bad threshold",
    "crc": "CRC mismatch",
    "name": "bad name",
    # an erased header over records that are not: a save stopped (a power cut) after its erase began
    "interrupted": "save interrupted",
}


class SlotError(PipelineError):
    """A slot that is not a valid database: the PipelineError names the field, `reason` is the REASONS key."""

    def __init__(self, reason: str, message: str, *, field: str, expected: str | None = None) -> None:
        super().__init__(f"{message} ({REASONS[reason]})", field=field, expected=expected)
        self.reason = reason


def check_name(name: str) -> str:
    """`name` when it follows NAME_RULE, else PipelineError naming the field `name` and the rule."""
    if not isinstance(name, str):
        raise PipelineError(f"got {type(name).__name__}", field="name", expected=NAME_RULE)
    if not 1 <= len(name) < NAME_BYTES or name[0] not in NAME_FIRST_CHARS or any(c not in NAME_CHARS for c in name):
        raise PipelineError(f"{name!r} is not a valid name", field="name", expected=NAME_RULE)
    return name


def record_bytes(embedding_size: int) -> int:
    return RECORD_HEAD.size + embedding_size * TEMPLATE_DTYPE.itemsize


def _check_sizes(embedding_size: int, capacity: int) -> None:
    largest = (U16_MAX - RECORD_HEAD.size) // TEMPLATE_DTYPE.itemsize  # record bytes are a u16 in the header
    if not isinstance(embedding_size, int) or not 1 <= embedding_size <= largest:
        raise PipelineError(f"got {embedding_size!r}", field="embedding_size", expected=f"an integer 1..{largest}")
    if not isinstance(capacity, int) or capacity < 1 or 2 * (HEADER.size + capacity * record_bytes(embedding_size)) \
            > FLASH_BYTES:
        raise PipelineError(f"got {capacity!r}", field="capacity",
                            expected=f"an integer >= 1 whose two slots fit the {FLASH_BYTES >> 20} MiB flash")


def slot_bytes(embedding_size: int, capacity: int) -> int:
    """One slot: header + `capacity` records, rounded up to whole flash sectors."""
    _check_sizes(embedding_size, capacity)
    used = HEADER.size + capacity * record_bytes(embedding_size)
    return -(-used // FLASH_SECTOR_BYTES) * FLASH_SECTOR_BYTES


def region_bytes(embedding_size: int, capacity: int) -> int:
    """The database's flash region: two slots."""
    return 2 * slot_bytes(embedding_size, capacity)


def _template(value: object, field: str) -> np.ndarray:
    """A read-only int16 copy of an integer vector, else PipelineError."""
    array = np.asarray(value)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu" or array.min() < -32768 or \
            array.max() > 32767:
        raise PipelineError(f"got {array.dtype} of shape {array.shape}", field=field,
                            expected="a non-empty 1-D integer vector within int16 (units of 1e-4)")
    copy = array.astype(np.int16)
    copy.flags.writeable = False
    return copy


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One enrolled person."""

    name: str
    photos: int  # how many photos made the template
    template: np.ndarray  # int16, the mean L2-normalised embedding in units of 1e-4

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.photos, int | np.integer) or not 0 <= self.photos <= U32_MAX:
            raise PipelineError(f"got {self.photos!r}", field="photos", expected=f"an integer 0..{U32_MAX}")
        object.__setattr__(self, "photos", int(self.photos))
        object.__setattr__(self, "template", _template(self.template, "template"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceRecord):
            return NotImplemented
        return (self.name, self.photos) == (other.name, other.photos) and \
            np.array_equal(self.template, other.template)

    def __hash__(self) -> int:
        return hash((self.name, self.photos, self.template.tobytes()))


@dataclass(frozen=True)
class FaceDatabase:
    """The enrolled people in their order, the match threshold and the sequence number of the slot they came from."""

    embedding_size: int
    capacity: int
    threshold_permyriad: int
    sequence: int
    records: tuple[FaceRecord, ...]

    def __post_init__(self) -> None:
        _check_sizes(self.embedding_size, self.capacity)
        if not isinstance(self.threshold_permyriad, int) or not 0 <= self.threshold_permyriad <= THRESHOLD_MAX:
            raise PipelineError(f"got {self.threshold_permyriad!r}", field="threshold_permyriad",
                                expected=f"an integer 0..{THRESHOLD_MAX} (similarity x 10000)")
        if not isinstance(self.sequence, int) or not 0 <= self.sequence <= U32_MAX:
            raise PipelineError(f"got {self.sequence!r}", field="sequence", expected=f"an integer 0..{U32_MAX}")
        object.__setattr__(self, "records", tuple(self.records))
        if len(self.records) > self.capacity:
            raise PipelineError(f"{len(self.records)} records", field="count", expected=f"<= {self.capacity}")
        for i, record in enumerate(self.records):
            if not isinstance(record, FaceRecord) or record.template.size != self.embedding_size:
                raise PipelineError("not a FaceRecord of the database's embedding size", field=f"records[{i}]",
                                    expected=f"a template of {self.embedding_size} values")

    def find(self, name: str) -> int:
        """Index of the record named `name`, -1 if absent."""
        return next((i for i, record in enumerate(self.records) if record.name == name), -1)

    def with_record(self, record: FaceRecord) -> FaceDatabase:
        """A copy with `record` appended; PipelineError for another embedding size, a duplicate name or a full
        database."""
        if record.template.size != self.embedding_size:
            raise PipelineError(f"{record.template.size} values", field="template",
                                expected=f"{self.embedding_size} (the database's embedding size)")
        if self.find(record.name) >= 0:
            raise PipelineError(f"{record.name!r} is already enrolled", field="name", expected="a new name")
        if len(self.records) >= self.capacity:
            raise PipelineError(f"the database is full ({self.capacity} people)", field="capacity",
                                expected="a free record (delete someone first)")
        return dataclasses.replace(self, records=self.records + (record,))

    def without(self, name: str) -> FaceDatabase:
        """A copy without the record named `name` (the others keep their order); PipelineError if absent."""
        index = self.find(name)
        if index < 0:
            raise PipelineError(f"{name!r} is not enrolled", field="name", expected="an enrolled name")
        return dataclasses.replace(self, records=self.records[:index] + self.records[index + 1:])


def _crc(header_fields: dict[str, int], records: bytes) -> int:
    return zlib.crc32(records, zlib.crc32(HEADER.pack(*{**header_fields, "crc32": 0}.values())))


def _record_bytes(record: FaceRecord) -> bytes:
    template = record.template.astype(TEMPLATE_DTYPE).tobytes()
    return RECORD_HEAD.pack(record.name.encode("ascii"), record.photos) + template


def encode_slot(db: FaceDatabase) -> bytes:
    """The slot as the flash holds it: header, records, erased bytes up to slot_bytes()."""
    records = b"".join(_record_bytes(r) for r in db.records)
    fields = {"magic": MAGIC, "version": VERSION, "header_bytes": HEADER.size,
              "record_bytes": record_bytes(db.embedding_size), "embedding_size": db.embedding_size,
              "capacity": db.capacity, "count": len(db.records), "sequence": db.sequence,
              "threshold_permyriad": db.threshold_permyriad, "crc32": 0}
    fields["crc32"] = _crc(fields, records)
    data = HEADER.pack(*fields.values()) + records
    return data + bytes([ERASED]) * (slot_bytes(db.embedding_size, db.capacity) - len(data))


def _decode_name(raw: bytes, index: int) -> str:
    text, _, padding = raw.partition(b"\0")
    field = f"records[{index}].name"
    if padding.strip(b"\0") or not text.isascii():
        raise SlotError("name", f"{raw!r} is not a NUL-padded ASCII name", field=field)
    try:
        return check_name(text.decode("ascii"))
    except PipelineError:
        raise SlotError("name", f"{text!r} breaks the name rule", field=field, expected=NAME_RULE) from None


def _check_header(fields: dict[str, int], embedding_size: int | None, capacity: int | None) -> None:
    """SlotError for the first header field that is wrong, in the order the C loader checks them."""
    if fields["magic"] != MAGIC:
        raise SlotError("magic", f"{fields['magic']:#010x}", field="magic", expected=f"{MAGIC:#010x}")
    if fields["version"] != VERSION:
        raise SlotError("version", f"{fields['version']}", field="version", expected=str(VERSION))
    size = fields["embedding_size"]
    wanted = {"header_bytes": HEADER.size, "embedding_size": embedding_size, "capacity": capacity,
              "record_bytes": record_bytes(size)}
    for name, value in wanted.items():
        if value is not None and fields[name] != value:
            raise SlotError("size", f"{fields[name]}", field=name, expected=str(value))
    try:
        _check_sizes(size, fields["capacity"])
    except PipelineError as err:
        raise SlotError("size", f"{size} values x {fields['capacity']} records", field=err.field or "capacity",
                        expected=err.expected) from None
    if fields["count"] > fields["capacity"]:
        raise SlotError("count", f"{fields['count']}", field="count", expected=f"<= capacity {fields['capacity']}")
    if fields["threshold_permyriad"] > THRESHOLD_MAX:
        raise SlotError("threshold", f"{fields['threshold_permyriad']}", field="threshold_permyriad",
                        expected=f"<= {THRESHOLD_MAX}")


def decode_slot(data: bytes, *, embedding_size: int | None = None, capacity: int | None = None) -> FaceDatabase:
    """The database in one slot (at least its header and records); SlotError (a PipelineError) naming the field that
    is wrong. Given sizes must match the header's, as the firmware's built-in ones must."""
    data = bytes(data)
    if len(data) < HEADER.size:
        raise SlotError("size", f"{len(data)} bytes", field="data", expected=f">= {HEADER.size} (a header)")
    fields = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data), strict=True))
    _check_header(fields, embedding_size, capacity)
    size, count, rec = fields["embedding_size"], fields["count"], fields["record_bytes"]
    end = HEADER.size + count * rec
    if len(data) < end:
        raise SlotError("size", f"{len(data)} bytes", field="data", expected=f">= {end} for {count} records")
    body = data[HEADER.size:end]
    if _crc(fields, body) != fields["crc32"]:
        raise SlotError("crc", f"{fields['crc32']:#010x}", field="crc32", expected=f"{_crc(fields, body):#010x}")
    records = []
    for i in range(count):
        raw = body[i * rec:(i + 1) * rec]
        name_raw, photos = RECORD_HEAD.unpack_from(raw)
        template = np.frombuffer(raw, TEMPLATE_DTYPE, size, RECORD_HEAD.size)
        records.append(FaceRecord(_decode_name(name_raw, i), photos, template))
    return FaceDatabase(embedding_size=size, capacity=fields["capacity"],
                        threshold_permyriad=fields["threshold_permyriad"], sequence=fields["sequence"],
                        records=tuple(records))


def region_image(db: FaceDatabase) -> bytes:
    """Both slots as the flash region holds them after a fresh write: `db` in slot 0, slot 1 erased."""
    slot = encode_slot(db)
    return slot + bytes([ERASED]) * len(slot)


@dataclass(frozen=True)
class SlotState:
    """What loading found in one slot."""

    index: int
    state: str  # "erased" | "valid" | "invalid"
    reason: str  # REASONS text when invalid, else ""
    sequence: int | None  # of a valid slot


def newer(a: int, b: int) -> bool:
    """Sequence `a` is newer than `b`, with wrap-around: (int32)(a - b) > 0."""
    diff = (a - b) & U32_MAX
    return 0 < diff < 0x8000_0000


def read_region(data: bytes, *, embedding_size: int | None = None,
                capacity: int | None = None) -> tuple[FaceDatabase | None, list[SlotState]]:
    """The database the firmware would load from its region (two slots), chosen as the C loader chooses (the newest
    valid slot), and what was found in each slot. Without sizes, the slot is half the data and each header's own
    sizes must fill it."""
    data = bytes(data)
    if embedding_size is not None and capacity is not None:
        size = slot_bytes(embedding_size, capacity)
        if len(data) != 2 * size:
            raise PipelineError(f"{len(data)} bytes", field="data", expected=f"{2 * size} (two slots)")
    else:
        size = len(data) // 2
        if len(data) != 2 * size or size == 0 or size % FLASH_SECTOR_BYTES:
            raise PipelineError(f"{len(data)} bytes", field="data",
                                expected=f"two slots of whole {FLASH_SECTOR_BYTES}-byte sectors")
    found: list[FaceDatabase | None] = []
    states = []
    for index in (0, 1):
        slot = data[index * size:(index + 1) * size]
        db = None
        if slot[:HEADER.size] == bytes([ERASED]) * HEADER.size:
            if slot[HEADER.size:HEADER.size + NAME_BYTES] != bytes([ERASED]) * NAME_BYTES:  # the first name
                states.append(SlotState(index, "invalid", REASONS["interrupted"], None))
            else:
                states.append(SlotState(index, "erased", "", None))
        else:
            try:
                db = decode_slot(slot, embedding_size=embedding_size, capacity=capacity)
                if slot_bytes(db.embedding_size, db.capacity) != size:
                    raise SlotError("size", f"{db.capacity} records of {db.embedding_size} values", field="capacity",
                                    expected=f"a slot of {size} bytes")
                states.append(SlotState(index, "valid", "", db.sequence))
            except SlotError as err:
                db = None
                states.append(SlotState(index, "invalid", REASONS[err.reason], None))
        found.append(db)
    if found[0] is not None and found[1] is not None:
        return (found[1] if newer(found[1].sequence, found[0].sequence) else found[0]), states
    return (found[0] or found[1]), states


def template_units(embeddings_units: np.ndarray) -> np.ndarray:
    """The template of N embeddings (N x E integers, units of 1e-4): the per-value mean rounded half away from zero
    in integer arithmetic, as int16; the C twin (face_db_template) sums as int32 and computes
    (2*sum + sign(sum)*n) / (2*n) with truncating division."""
    units = np.asarray(embeddings_units)
    if units.ndim != 2 or 0 in units.shape or units.dtype.kind not in "iu" or \
            units.min() < -32768 or units.max() > 32767:
        raise PipelineError(f"got {units.dtype} of shape {units.shape}", field="embeddings",
                            expected="an N x E integer array (N >= 1) within int16, units of 1e-4")
    n = units.shape[0]
    sums = units.astype(np.int64).sum(axis=0)
    if np.abs(sums).max() > 0x7FFF_FFFF:
        raise PipelineError(f"{n} embeddings sum past int32", field="embeddings", expected="fewer photos")
    sign = np.sign(sums)
    return (sign * ((2 * np.abs(sums) + n) // (2 * n))).astype(np.int16)


def _offsets(fmt: str, names: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(field, byte offset, byte width) of each field of a little-endian struct format ("32s" is one field)."""
    codes: list[str] = []
    for count, kind in re.findall(r"(\d*)([a-zA-Z])", fmt):
        codes += [count + kind] if kind == "s" else [kind] * int(count or 1)
    out, at = [], 0
    for name, code in zip(names, codes, strict=True):
        out.append((name, at, struct.calcsize("<" + code)))
        at += out[-1][2]
    return out


def layout_header(embedding_size: int, capacity: int, region_offset: int, threshold_permyriad: int) -> str:
    """face_db_layout.h: every number and text of the format the firmware needs, for a database of `capacity`
    records of `embedding_size` values at flash offset `region_offset`, `threshold_permyriad` when none is stored."""
    size = slot_bytes(embedding_size, capacity)
    if not isinstance(region_offset, int) or region_offset < 0 or region_offset % FLASH_SECTOR_BYTES or \
            region_offset + 2 * size > FLASH_BYTES:
        raise PipelineError(f"got {region_offset!r}", field="region_offset",
                            expected=f"a multiple of {FLASH_SECTOR_BYTES} with {2 * size} bytes of the "
                                     f"{FLASH_BYTES >> 20} MiB flash after it")
    if not isinstance(threshold_permyriad, int) or not 0 <= threshold_permyriad <= THRESHOLD_MAX:
        raise PipelineError(f"got {threshold_permyriad!r}", field="threshold_permyriad",
                            expected=f"an integer 0..{THRESHOLD_MAX}")
    numbers = {"MAGIC": MAGIC, "VERSION": VERSION, "NAME_BYTES": NAME_BYTES, "HEADER_BYTES": HEADER.size,
               "RECORD_BYTES": record_bytes(embedding_size), "EMBEDDING_SIZE": embedding_size, "CAPACITY": capacity,
               "SLOT_BYTES": size, "REGION_OFFSET": region_offset, "DEFAULT_THRESHOLD": threshold_permyriad,
               "THRESHOLD_MAX": THRESHOLD_MAX, "WRITE_CHUNK": WRITE_CHUNK}
    lines = ["/* Generated by deploy/attendance/face_db.py; do not edit. */", "#ifndef FACE_DB_LAYOUT_H",
             "#define FACE_DB_LAYOUT_H", ""]
    lines += [f"#define FACE_DB_{name} {value}u" for name, value in numbers.items()]
    lines += ["", "/* FACE_DB_HDR_<FIELD> / FACE_DB_REC_<FIELD>: byte offset in the header / a record; _BYTES: width "
              "(little-endian;\n * of one element for the template). */"]
    for prefix, fmt, names in (("HDR", HEADER.format, HEADER_FIELDS),
                               ("REC", RECORD_HEAD.format + "h", RECORD_FIELDS)):
        for name, offset, width in _offsets(fmt, names):
            lines += [f"#define FACE_DB_{prefix}_{name.upper()} {offset}u",
                      f"#define FACE_DB_{prefix}_{name.upper()}_BYTES {width}u"]
    lines += ["", f'#define FACE_DB_NAME_FIRST_CHARS "{NAME_FIRST_CHARS}"',
              f'#define FACE_DB_NAME_CHARS "{NAME_CHARS}"', f'#define FACE_DB_NAME_RULE "{NAME_RULE}"', ""]
    lines += [f'#define FACE_DB_REASON_{key.upper()} "{text}"' for key, text in REASONS.items()]
    return "\n".join(lines + ["", "#endif", ""])
