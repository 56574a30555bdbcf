"""Exponential retry delays with jitter, so that many connections do not retry in step.

One class for every reconnect and retry: the MQTT bridge's broker connections, the
caption outputs' deliveries and the client's resumes. It lives in `protocol` because
the client may import nothing else of the server (tests/unit/test_imports.py); it is
stdlib only, as the rest of `protocol` is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Each delay is its nominal value times a draw from this range: +-20 % keeps
# connections that failed together from retrying in lockstep.
JITTER = (0.8, 1.2)


@dataclass
class Backoff:
    """`first_s`, times `factor` per failed attempt up to `max_s`; `reset` once connected.

    `delay(n)` is stateless (the wait before retry number n, from 1) for callers that
    count their own attempts; `next_delay()` counts them here. `max_attempts` is for
    callers that give up (None: retry for ever).
    """

    first_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: tuple[float, float] = JITTER
    max_attempts: int | None = None
    attempts: int = 0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `attempt` (1 = the first retry)."""
        nominal = min(self.max_s, self.first_s * self.factor ** max(0, attempt - 1))
        low, high = self.jitter
        return max(0.0, float(nominal * (rng or random).uniform(low, high)))

    def next_delay(self) -> float:
        self.attempts += 1
        return self.delay(self.attempts)

    def reset(self) -> None:
        self.attempts = 0
