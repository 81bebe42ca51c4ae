"""SLIP framing as used by the K210 ISP (END 0xC0, ESC 0xDB; 0xC0 -> DB DC, 0xDB -> DB DD)."""

from __future__ import annotations

from dataclasses import dataclass

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD


def encode(payload: bytes) -> bytes:
    """One frame on the wire: END, the escaped payload, END (ESC escaped first, then END)."""
    body = payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


def decode(frame: bytes) -> bytes:
    """Decode one complete wire frame (with its END bytes); raises ValueError on a bad escape or missing END."""
    if len(frame) < 2 or frame[0] != END or frame[-1] != END:
        raise ValueError("a SLIP frame starts and ends with 0xC0")
    decoder = SlipDecoder()
    frames = decoder.feed(frame)
    if len(frames) != 1 or not frames[0].valid:
        raise ValueError("not exactly one valid SLIP frame")
    return frames[0].payload


@dataclass(frozen=True)
class Frame:
    """A received frame; `valid` is False when it held a bad escape sequence or grew past the size limit."""

    payload: bytes
    valid: bool = True


class SlipDecoder:
    """Incremental decoder: bytes before the first END are discarded (boot-log text), empty frames are skipped."""

    def __init__(self, max_payload: int = 16 + 65536 + 64) -> None:
        self.max_payload = max_payload
        self._synced = False
        self._buffer = bytearray()
        self._escape = False
        self._bad = False

    def reset(self) -> None:
        """Forget any partial frame and wait for the next END again."""
        self._synced = False
        self._buffer.clear()
        self._escape = False
        self._bad = False

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        for byte in data:
            if not self._synced:
                self._synced = byte == END
                continue
            if byte == END:
                if self._buffer or self._bad:
                    frames.append(Frame(bytes(self._buffer), valid=not (self._bad or self._escape)))
                self._buffer.clear()
                self._escape = False
                self._bad = False
                continue
            if self._bad:
                continue
            if self._escape:
                self._escape = False
                if byte == ESC_END:
                    self._buffer.append(END)
                elif byte == ESC_ESC:
                    self._buffer.append(ESC)
                else:
                    self._bad = True
            elif byte == ESC:
                self._escape = True
            else:
                self._buffer.append(byte)
            if len(self._buffer) > self.max_payload:
                self._bad = True
                self._buffer.clear()
        return frames
