"""Writing a block as a series of acknowledged frames: every retry goes to the same address, the frame size halves
after a failure (a noisy line still gets data through) and grows back after a run of clean frames. Replies carry no
checksum, so on a noisy line a corrupted error reply could read as OK; there every frame must be acknowledged twice
in a row before it counts."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from deploy.isp.link import IspError, IspLink
from deploy.isp.packet import Reason, request

SECTOR = 4096
BLOCK = 65536
GROW_AFTER = 8
NOISE_WINDOW = 32
NOISY_AT = 2  # anomalies within the window that switch on double acknowledgement


def _frame_size(size: int, address: int, remaining: int, aligned: bool) -> int:
    if not aligned:
        return min(size, remaining)
    return BLOCK if size >= BLOCK and address % BLOCK == 0 and remaining >= BLOCK else SECTOR


def write_in_frames(link: IspLink, op: int, address: int, data: bytes, *, max_frame: int, min_frame: int,
                    attempts: int, what: str, aligned: bool = False, ok_reasons: tuple[int, ...] = (Reason.OK,),
                    progress: Callable[[int], None] | None = None) -> int:
    """Write `data` at `address`; returns how many frames were sent. Raises IspError when one address fails
    `attempts` times."""
    offset = 0
    size = max_frame
    clean = 0
    sent = 0
    recent: deque[bool] = deque(maxlen=NOISE_WINDOW)
    while offset < len(data):
        failures = acks = busy = 0
        while True:
            n = _frame_size(size, address + offset, len(data) - offset, aligned)
            payload = request(op, address + offset, data[offset:offset + n])
            problem = link.try_once(payload, op, link.timing.reply_timeout(len(payload), link.baud), ok_reasons)
            sent += 1
            recent.append(problem not in (None, "busy"))
            if problem is None:
                acks += 1
                if acks >= (2 if sum(recent) >= NOISY_AT else 1):
                    break
                continue
            acks = 0
            if problem == "busy":
                busy += 1
                if busy > link.timing.max_busy:
                    raise IspError(f"{what} at 0x{address + offset:08X}: the board stayed busy for {busy} replies")
                continue
            failures += 1
            clean = 0
            size = max(min_frame, size // 2)
            link.log(f"{what} at 0x{address + offset:08X}: {problem}; retrying the same address "
                     f"({failures}/{attempts})")
            if failures >= attempts:
                raise IspError(f"{what} at 0x{address + offset:08X} failed {attempts} times (last: {problem})")
        offset += n
        if progress is not None:
            progress(n)
        clean += 1
        if clean >= GROW_AFTER and size < max_frame:
            size, clean = min(max_frame, size * 2), 0
    return sent
