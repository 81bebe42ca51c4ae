"""Writing a block as a series of acknowledged frames: every retry goes to the same address, and the frame size
is the one that moves data fastest over the line as the recent frames describe it (deploy/isp/line_model.py), within
what the flash-stage dialect accepts. Replies carry no checksum, so on a noisy line a corrupted error reply could
read as OK; there every frame must be acknowledged twice in a row before it counts."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from deploy.isp.line_model import LineModel
from deploy.isp.link import IspError, IspLink
from deploy.isp.packet import Reason, request

SECTOR = 4096
BLOCK = 65536
NOISE_WINDOW = 32
NOISY_AT = 2  # anomalies within the window that switch on double acknowledgement
HALVE_EVERY = 2  # failed copies at one address after which its next frames are at most half as long


def frame_sizes(min_frame: int, max_frame: int, aligned: bool) -> list[int]:
    """The frame sizes a dialect accepts: whole 4 KiB sectors or 64 KiB blocks, else powers of two in range."""
    if aligned:
        return [SECTOR, BLOCK] if max_frame >= BLOCK else [SECTOR]
    sizes, size = [], min_frame
    while size < max_frame:
        sizes.append(size)
        size *= 2
    return [*sizes, max_frame]


def _frame_size(size: int, address: int, remaining: int, aligned: bool) -> int:
    if not aligned:
        return min(size, remaining)
    return BLOCK if size >= BLOCK and address % BLOCK == 0 and remaining >= BLOCK else SECTOR


def write_in_frames(link: IspLink, op: int, address: int, data: bytes, *, max_frame: int, min_frame: int,
                    attempts: int, what: str, aligned: bool = False, ok_reasons: tuple[int, ...] = (Reason.OK,),
                    progress: Callable[[int], None] | None = None) -> int:
    """Write `data` at `address`; returns how many frames were sent. Raises IspError when one address fails
    `attempts` times."""
    sizes = frame_sizes(min_frame, max_frame, aligned)
    line = LineModel(settle_s=link.timing.settle_s)
    offset = sent = 0
    recent: deque[bool] = deque(maxlen=NOISE_WINDOW)
    while offset < len(data):
        failures = acks = busy = 0
        cap = max_frame
        while True:
            need = 2 if sum(recent) >= NOISY_AT else 1
            best = line.best_size([size for size in sizes if size <= cap] or sizes[:1], link.baud, need)
            n = _frame_size(best, address + offset, len(data) - offset, aligned)
            payload = request(op, address + offset, data[offset:offset + n])
            started = time.monotonic()
            problem = link.try_once(payload, op, link.timing.reply_timeout(len(payload), link.baud), ok_reasons)
            sent += 1
            recent.append(problem not in (None, "busy"))
            if problem != "busy":
                line.record(n, problem is not None, time.monotonic() - started, link.baud)
            if problem is None:
                acks += 1
                if acks >= need:
                    break
                continue
            acks = 0
            if problem == "busy":
                busy += 1
                if busy > link.timing.max_busy:
                    raise IspError(f"{what} at 0x{address + offset:08X}: the board stayed busy for {busy} replies")
                continue
            failures += 1
            if failures % HALVE_EVERY == 0:  # an unlucky address still gets through in smaller frames
                cap = max(min_frame, n // 2)
            link.log(f"{what} at 0x{address + offset:08X}: {problem}; retrying the same address "
                     f"({failures}/{attempts}, frame {n} B, line error rate {line.byte_error_rate():.1e}/byte)")
            if failures >= attempts:
                raise IspError(f"{what} at 0x{address + offset:08X} failed {attempts} times (last: {problem})")
        offset += n
        if progress is not None:
            progress(n)
    return sent
