"""Exponential reconnect delays with jitter, so that many connections do not retry in step."""

from __future__ import annotations

import random
from dataclasses import dataclass

JITTER = 0.2  # each delay is its nominal value, give or take this share


@dataclass
class Backoff:
    """`first_s`, doubling per failed attempt up to `max_s`; `reset` once connected."""

    first_s: float = 0.5
    max_s: float = 30.0
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.max_s, self.first_s * 2 ** self.attempts)
        self.attempts += 1
        return float(delay * random.uniform(1 - JITTER, 1 + JITTER))

    def reset(self) -> None:
        self.attempts = 0
