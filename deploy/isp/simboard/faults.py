"""Fault injection for the simulated board: byte corruption both ways, dropped replies, stalls, busy replies,
disconnects, all drawn from one seeded generator so a run can be replayed."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultConfig:
    corrupt_in: float = 0.0  # probability that a byte from the host is changed
    corrupt_out: float = 0.0  # probability that a byte to the host is changed
    drop_reply: float = 0.0  # probability that a reply is never sent
    stall_rate: float = 0.0  # probability that a reply is delayed by stall_s
    stall_s: float = 0.0
    busy_replies: int = 0  # answer this many flash writes with E7 (busy) first
    disconnect_after: int = 0  # drop the connection after this many frames (0 = never)
    junk_rate: float = 0.0  # probability of line noise (random bytes, END included) before a reply
    wrong_greetings: int = 0  # answer this many ROM greetings with another op, like a running application
    seed: int = 0


class Faults:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.busy_left = config.busy_replies
        self.wrong_greetings_left = config.wrong_greetings
        self.frames = 0

    def corrupt(self, data: bytes, rate: float) -> bytes:
        """Change each byte with probability `rate` (to a different value), skipping ahead geometrically."""
        if rate <= 0 or not data:
            return data
        if rate >= 1:
            return bytes(self.rng.randrange(256) for _ in data)
        out = bytearray(data)
        position = -1
        while True:
            position += 1 + int(math.log(1.0 - self.rng.random()) / math.log(1.0 - rate))
            if position >= len(out):
                return bytes(out)
            out[position] ^= self.rng.randrange(1, 256)

    def drop(self) -> bool:
        return self.rng.random() < self.config.drop_reply

    def stall(self) -> float:
        return self.config.stall_s if self.rng.random() < self.config.stall_rate else 0.0

    def busy(self) -> bool:
        if self.busy_left > 0:
            self.busy_left -= 1
            return True
        return False

    def wrong_greeting(self) -> bool:
        if self.wrong_greetings_left > 0:
            self.wrong_greetings_left -= 1
            return True
        return False

    def junk(self) -> bytes:
        """Random noise before a reply (sometimes with END bytes that open bogus frames), or nothing."""
        if self.rng.random() >= self.config.junk_rate:
            return b""
        return bytes(self.rng.choice((0xC0, self.rng.randrange(256))) for _ in range(self.rng.randrange(4, 32)))

    def count_frame(self) -> bool:
        """Count a frame; True when the connection should now be dropped."""
        self.frames += 1
        return self.config.disconnect_after > 0 and self.frames == self.config.disconnect_after
