"""Read what the firmware prints: one JSON line per frame (a detector's detections or a recognizer's embedding),
plus one per output tensor when dumping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import PipelineError

EMBEDDING_UNITS = 10000  # firmware/app/embedding.h: embedding values are printed as integers in units of 1e-4


@dataclass(frozen=True)
class FrameResult:
    """One frame's result line: a detector's detections (box in frame pixels) or a recognizer's face box and
    embedding, the time and, on QEMU with -icount, instructions."""

    frame: int
    detections: list[dict]
    ms: int
    instructions: int | None = None
    box: list[int] | None = None
    embedding_units: list[int] | None = None
    faces: list[dict] | None = None  # the attendance app's named faces

    @property
    def embedding(self) -> np.ndarray | None:
        """The printed embedding as float64 values (each within 0.5e-4 of the firmware's)."""
        units = self.embedding_units
        return None if units is None else np.asarray(units, np.float64) / EMBEDDING_UNITS


@dataclass
class ConsoleResult:
    frames: list[FrameResult] = field(default_factory=list)
    outputs: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (frame, output index) -> raw bytes
    records: list[dict] = field(default_factory=list)  # other JSON lines (the attendance app's enroll/list lines)
    text: str = ""
    boot_seconds: float | None = None  # QEMU: process start to the msh prompt


def parse_console(text: str, *, source: str) -> ConsoleResult:
    """Collect the JSON lines of `text`; other lines (boot messages) are kept only in .text."""
    result = ConsoleResult(text=text)
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"line {number} is not valid JSON: {exc}", path=source,
                                expected="one JSON object per line") from None
        if "hex" in record:
            data = bytes.fromhex(record["hex"])
            if len(data) != record["bytes"]:
                raise PipelineError(f"line {number}: {len(data)} bytes of hex, header says {record['bytes']}",
                                    path=source)
            result.outputs[(record["frame"], record["output"])] = data
        elif "frame" in record and "ms" in record:
            result.frames.append(FrameResult(frame=record["frame"], detections=record.get("detections", []),
                                             ms=record["ms"], instructions=record.get("insn"), box=record.get("box"),
                                             embedding_units=record.get("embedding"), faces=record.get("faces")))
        else:
            result.records.append(record)
    return result
