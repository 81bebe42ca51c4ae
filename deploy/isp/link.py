"""The host end of the ISP line: SLIP frames over a pyserial port, one stop-and-wait exchange at a time."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import serial

from deploy.isp import slip
from deploy.isp.packet import Reason, Reply, parse_reply
from pipeline.errors import PipelineError


class IspError(PipelineError):
    """The board did not do what the protocol requires (no greeting, a frame never acknowledged, lost contact)."""


@dataclass(frozen=True)
class Timing:
    """Timeouts and waits; the defaults follow spec §5 (frame time + 2 s per 64 KiB + 1 s)."""

    reply_base_s: float = 1.0
    program_s_per_64k: float = 2.0
    greeting_s: float = 0.5
    boot_wait_s: float = 0.1
    busy_backoff_s: float = 0.5
    baud_settle_s: float = 0.05
    max_busy: int = 200
    greeting_rounds: int = 15  # kflash's count of reset-and-greet rounds
    settle_s: float = 0.005  # after an error reply: the rest of a frame the noise split in two, and its reply

    def reply_timeout(self, frame_bytes: int, baud: int) -> float:
        return frame_bytes * 10 / baud * 1.25 + self.reply_base_s + self.program_s_per_64k * frame_bytes / 65536


class IspLink:
    """Frames in, frames out. When a reply did not come in time it resynchronises (END, then drop what arrives
    within `reply_base_s`), and drains again after the next acknowledgement, so that a late reply to an earlier copy
    of a frame is not taken as the acknowledgement of the next frame. When the board did reply, with an error or a
    reply the noise garbled, that copy is answered: only the rest of a frame split by a corrupted byte can still be
    on its way, so the wait is its wire time plus `settle_s`, not the whole `reply_base_s` (on a noisy line that
    wait, paid on every failed frame, was most of the time)."""

    def __init__(self, port: serial.SerialBase, timing: Timing, log: Callable[[str], None] = lambda _msg: None):
        self.port = port
        self.timing = timing
        self.log = log
        self.port.timeout = 0.005
        self._decoder = slip.SlipDecoder()
        self._frames: deque[slip.Frame] = deque()
        self._dirty = False
        self.anomalies = 0

    @property
    def baud(self) -> int:
        return int(self.port.baudrate)

    @baud.setter
    def baud(self, value: int) -> None:
        """Drain our output, switch the host rate, and forget anything received at the old rate."""
        self.port.flush()
        self.port.baudrate = value
        self.discard_input()

    def discard_input(self) -> None:
        self.port.reset_input_buffer()
        self._frames.clear()
        self._decoder.reset()

    def send(self, payload: bytes) -> None:
        self.port.write(slip.encode(payload))

    def next_frame(self, deadline: float) -> slip.Frame | None:
        """The next received frame, or None when `deadline` (time.monotonic) passes first."""
        while not self._frames:
            if time.monotonic() >= deadline:
                return None
            data = self.port.read(max(1, self.port.in_waiting))
            if data:
                self._frames.extend(self._decoder.feed(data))
        return self._frames.popleft()

    def next_reply(self, deadline: float) -> Reply | None:
        """The next reply that is not a debug message (D1 texts are logged); a malformed frame gives op -1."""
        while (frame := self.next_frame(deadline)) is not None:
            reply = parse_reply(frame.payload) if frame.valid else None
            if reply is None:
                return Reply(-1, -1, frame.payload)
            if reply.op == 0xD1:
                self.log(f"device: {reply.body.decode('ascii', errors='replace').strip()}")
                continue
            return reply
        return None

    def drain(self, window: float) -> None:
        """Read and drop everything that arrives within `window` seconds."""
        deadline = time.monotonic() + window
        while self.next_frame(deadline) is not None:
            pass

    def resync(self) -> None:
        """Close any partial frame at the device (a lone END) and drop every reply still on its way."""
        self.port.write(bytes([slip.END]))
        self.drain(self.timing.reply_base_s)
        self._dirty = True

    def settle(self, frame_bytes: int) -> None:
        """After an answered copy: close any partial frame and drop what arrives while the rest of it could."""
        self.port.write(bytes([slip.END]))
        self.drain(frame_bytes * 10 / self.baud + self.timing.settle_s)

    def try_once(self, payload: bytes, op: int, timeout: float,
                 ok_reasons: tuple[int, ...] = (Reason.OK,)) -> str | None:
        """Send `payload` once; None when the device acknowledged it, else what went wrong."""
        self.send(payload)
        reply = self.next_reply(time.monotonic() + timeout)
        if reply is not None and reply.op == op and reply.reason in ok_reasons:
            if self._dirty:
                self.drain(self.timing.reply_base_s)
                self._dirty = False
            return None
        self.anomalies += 1
        if reply is not None and reply.op == op and reply.reason == Reason.FLASH_BUSY:
            time.sleep(self.timing.busy_backoff_s)
            return "busy"
        if reply is None:
            self.resync()
            return f"no reply within {timeout:.2f} s"
        if reply.op in (op, -1):  # this copy was answered (with an error, or garbled on the way back)
            self.settle(len(payload))
            return "malformed reply" if reply.op < 0 else f"reply {reply.describe()}"
        self.resync()  # a reply to another command: out of step, drop everything still on its way
        return f"reply {reply.describe()}"

    def exchange(self, payload: bytes, op: int, what: str, attempts: int, timeout: float | None = None,
                 ok_reasons: tuple[int, ...] = (Reason.OK,)) -> None:
        """Send the same frame until it is acknowledged; busy replies back off without using up an attempt."""
        timeout = timeout if timeout is not None else self.timing.reply_timeout(len(payload), self.baud)
        failures = busy = 0
        while failures < attempts:
            problem = self.try_once(payload, op, timeout, ok_reasons)
            if problem is None:
                return
            if problem == "busy" and busy < self.timing.max_busy:
                busy += 1
                continue
            failures += 1
            self.log(f"{what}: {problem} (attempt {failures}/{attempts})")
        raise IspError(f"{what}: not acknowledged after {attempts} attempts (last: {problem})")
