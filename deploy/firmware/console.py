"""Read what the firmware prints: one JSON line per frame, plus one per output tensor when dumping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class FrameResult:
    """One frame's result line: detections (box in frame pixels), time and, on QEMU with -icount, instructions."""

    frame: int
    detections: list[dict]
    ms: int
    instructions: int | None = None


@dataclass
class ConsoleResult:
    frames: list[FrameResult] = field(default_factory=list)
    outputs: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (frame, output index) -> raw bytes
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
        else:
            result.frames.append(FrameResult(frame=record["frame"], detections=record["detections"],
                                             ms=record["ms"], instructions=record.get("insn")))
    return result
