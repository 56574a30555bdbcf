"""How many live streams the decoder can keep in real time, from measured decode cost.

Partials are elastic (the scheduler coalesces them when busy), finals are not: every
second of speech must be decoded once more as a final. So the cost that decides
admission is the final decode time per second of audio, measured on this machine
with this model, times the streams that would be live. A stream is admitted while
that load stays under `max_load` of the decode capacity (workers × wall time),
which leaves the rest for partials, and while the live queue is not already late.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from captioncast.errors import Overloaded

# Until the first finals are measured: final decode seconds per audio second. Measured
# with tiny.en int8 on 2 CPU cores at about 0.1; a pessimistic guess admits fewer at first.
PRIOR_COST_PER_AUDIO_S = 0.15
WINDOW_S = 60.0
MAX_LAG_S = 2.0  # a live decode waiting this long means the machine is already late


@dataclass(frozen=True)
class CapacityOptions:
    max_load: float = 0.7  # 0: admit by --max-sessions only
    max_lag_s: float = MAX_LAG_S


@dataclass(frozen=True)
class CapacityReport:
    cost_per_audio_s: float  # final decode seconds per audio second (EWMA)
    capacity: int | None  # streams that fit; None when the estimate is off
    load: float  # decode time used by live decodes over the window, per worker
    lag_s: float


class CapacityMeter:
    """Folds finished decodes into a cost estimate and decides admission."""

    def __init__(self, workers: int, options: CapacityOptions | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.workers = max(1, workers)
        self.options = options or CapacityOptions()
        self._clock = clock or time.monotonic
        self._cost = PRIOR_COST_PER_AUDIO_S
        self._measured = False
        self._busy: deque[tuple[float, float]] = deque()  # (finished at, decode seconds)

    def record(self, kind: str, audio_s: float, decode_s: float) -> None:
        now = self._clock()
        self._busy.append((now, decode_s))
        self._trim(now)
        if kind != "final" or audio_s < 0.5:
            return
        sample = decode_s / audio_s
        # The first measurement replaces the prior; later ones move it slowly, so that one
        # slow decode on a noisy machine does not shut the door.
        self._cost = sample if not self._measured else 0.9 * self._cost + 0.1 * sample
        self._measured = True

    def _trim(self, now: float) -> None:
        while self._busy and self._busy[0][0] < now - WINDOW_S:
            self._busy.popleft()

    def capacity(self) -> int | None:
        if self.options.max_load <= 0:
            return None
        return int(self.options.max_load * self.workers / self._cost + 1e-9)

    def report(self, lag_s: float) -> CapacityReport:
        now = self._clock()
        self._trim(now)
        used = sum(seconds for _, seconds in self._busy)
        return CapacityReport(round(self._cost, 4), self.capacity(),
                              round(used / (WINDOW_S * self.workers), 3), round(lag_s, 3))

    def admit(self, live_streams: int, lag_s: float) -> None:
        """Raise Overloaded when one more stream would make the live ones late."""
        capacity = self.capacity()
        if capacity is None:
            return
        if live_streams + 1 > capacity:
            raise Overloaded(
                f"the server is at capacity ({live_streams} live streams; each costs "
                f"{self._cost:.2f} s of decoding per second of speech); try another server "
                "or later")
        if lag_s > self.options.max_lag_s:
            raise Overloaded(
                f"the server is behind by {lag_s:.1f} s; try another server or later")
