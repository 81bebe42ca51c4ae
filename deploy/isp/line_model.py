"""What the recent frames say about the line, and the frame size that moves data fastest over it.

The byte error rate is the maximum-likelihood fit to the outcomes of the last WINDOW frames of their sizes (a frame
of n bytes gets through with probability (1 - p)^n), so a few failed large frames already say that the line is
bad, where a failures-per-byte count would say so only after many. The board's time per acknowledged frame beyond
its wire time (reply latency, and the flash erase/program a write costs) is measured from the acknowledgements.
The best size minimises the expected time per delivered byte, counting the failed copies and, on a noisy line, the
second acknowledgement every frame needs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 64
RATES = np.geomspace(1e-7, 0.5, 120)  # the byte error rates the likelihood is evaluated at
FRAME_OVERHEAD = 40  # SLIP framing, the 16-byte request header and the reply, in bytes on the wire


@dataclass
class LineModel:
    settle_s: float = 0.005  # what a failed copy costs beyond its wire time
    attempts: deque[tuple[int, bool]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    ack_extra_s: float = 0.0  # EWMA of (reply time - wire time) over acknowledged frames

    def record(self, frame_bytes: int, failed: bool, seconds: float, baud: int) -> None:
        self.attempts.append((frame_bytes + FRAME_OVERHEAD, failed))
        if not failed:
            extra = max(0.0, seconds - wire_seconds(frame_bytes, baud))
            self.ack_extra_s = extra if self.ack_extra_s == 0.0 else 0.8 * self.ack_extra_s + 0.2 * extra

    def byte_error_rate(self) -> float:
        """Maximum-likelihood byte error rate of the recent frames (0 when none failed)."""
        if not any(failed for _, failed in self.attempts):
            return 0.0
        sizes = np.array([n for n, _ in self.attempts], float)[:, None]
        failed = np.array([f for _, f in self.attempts])[:, None]
        clean = np.clip((1 - RATES[None, :]) ** sizes, 1e-300, 1 - 1e-12)
        likelihood = np.where(failed, np.log1p(-clean), np.log(clean)).sum(axis=0)
        return float(RATES[int(np.argmax(likelihood))])

    def seconds_per_byte(self, size: int, baud: int, acks: int) -> float:
        """Expected time per delivered byte at this frame size: `acks` clean copies in a row, failed copies between."""
        clean = (1 - self.byte_error_rate()) ** (size + FRAME_OVERHEAD)
        if clean <= 1e-12:
            return float("inf")
        wire = wire_seconds(size, baud)
        failures = (1 - clean ** acks) / clean ** acks  # expected failed copies before `acks` clean ones in a row
        return (acks * (wire + self.ack_extra_s) + failures * (wire + self.settle_s)) / size

    def best_size(self, sizes: list[int], baud: int, acks: int) -> int:
        """The frame size (of `sizes`) with the least expected time per byte; the largest on a clean line."""
        return min(sorted(sizes, reverse=True), key=lambda n: self.seconds_per_byte(n, baud, acks))


def wire_seconds(frame_bytes: int, baud: int) -> float:
    return (frame_bytes + FRAME_OVERHEAD) * 10 / baud
