"""Admission by measured decode load: who may connect, and what a session that starts speaking gets.

Partials are elastic (the scheduler coalesces them when busy), finals are not: every
second of speech must be decoded once more as a final. So the cost that decides
admission is the final decode time per second of audio, measured on this machine
with this model, times the streams that are speaking. A session that is connected but
silent decodes nothing, so connecting is refused only when the decoders are already
late (or by the transport's connection limits). When a session starts speaking it is
asked again with the number now speaking: under the soft capacity (`max_load` of the
decode capacity, workers × wall time, which leaves the rest for partials) it is
admitted; past it its partials are shed; past the hard capacity (`hard_load`: finals
alone would not keep up) it is refused, so that the others' finals stay on time.
"""

from __future__ import annotations

import enum
import math
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
WAIT_WINDOW_S = 20.0  # the finals' recent queue waits: what "late" means now


@dataclass(frozen=True)
class CapacityOptions:
    max_load: float = 0.7  # speakers past this share of decode time get no partials; 0: off
    # Finals alone need this share: a speaker past it is refused. Below 1, so that the
    # speakers admitted keep some room for the estimate's error.
    hard_load: float = 0.9
    max_lag_s: float = MAX_LAG_S
    # A pause between sentences keeps a session counted as speaking for this long, so
    # that it is not asked again (and refused) at every breath.
    speech_grace_s: float = 5.0
    retry_after_s: float = 10.0  # what a refusal tells a client to wait, at least
    # The cost estimate counts decode time only, not what the event loop, the VAD of many
    # sessions or a neighbour take from the cores: so a new speaker is also refused while
    # the live finals of the last WAIT_WINDOW_S waited this long in the queue (90th
    # percentile), since another speaker would make them later still (bench/RESULTS.md,
    # load: 10 admitted by the estimate, with finals p95 3-5 s).
    max_final_wait_s: float = 0.75


class Decision(enum.Enum):
    """What a session that starts speaking gets."""

    SPEAK = "speak"  # partials and finals
    SHED = "shed"  # finals only
    REFUSE = "refuse"  # an `overloaded` error, its last finals, close 1013


@dataclass(frozen=True)
class CapacityReport:
    cost_per_audio_s: float  # final decode seconds per audio second (EWMA)
    capacity: int | None  # speakers that get partials; None when the estimate is off
    hard_capacity: int | None  # speakers whose finals keep up
    load: float  # decode time used by live decodes over the window, per worker
    lag_s: float


class Late(Overloaded):
    """The decoders are behind: nobody new is taken until they catch up."""


class AtCapacity(Overloaded):
    """Another speaker would make the live finals late."""


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
        self._waits: deque[tuple[float, float]] = deque()  # live finals: (finished at, waited)

    @property
    def enabled(self) -> bool:
        return self.options.max_load > 0

    def record(self, kind: str, audio_s: float, decode_s: float, waited_s: float = 0.0) -> None:
        now = self._clock()
        self._busy.append((now, decode_s))
        if kind == "final":
            self._waits.append((now, waited_s))
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
        while self._waits and self._waits[0][0] < now - WAIT_WINDOW_S:
            self._waits.popleft()

    def recent_final_wait(self) -> float:
        """The 90th percentile of the live finals' queue waits over the last WAIT_WINDOW_S."""
        self._trim(self._clock())
        if not self._waits:
            return 0.0
        waits = sorted(w for _, w in self._waits)
        return waits[min(len(waits) - 1, math.ceil(0.9 * len(waits)) - 1)]

    def _finals_wait(self) -> bool:
        bound = self.options.max_final_wait_s
        return bound > 0 and self.recent_final_wait() > bound

    def _streams(self, load: float) -> int | None:
        if not self.enabled:
            return None
        return int(load * self.workers / self._cost + 1e-9)

    def capacity(self) -> int | None:
        """Speakers that fit with their partials (the soft capacity)."""
        return self._streams(self.options.max_load)

    def hard_capacity(self) -> int | None:
        """Speakers whose finals alone keep up; never under the soft capacity."""
        soft, hard = self.capacity(), self._streams(self.options.hard_load)
        return None if soft is None or hard is None else max(soft, hard)

    def report(self, lag_s: float) -> CapacityReport:
        now = self._clock()
        self._trim(now)
        used = sum(seconds for _, seconds in self._busy)
        return CapacityReport(round(self._cost, 4), self.capacity(), self.hard_capacity(),
                              round(used / (WINDOW_S * self.workers), 3), round(lag_s, 3))

    def retry_after(self, lag_s: float = 0.0) -> int:
        """Whole seconds a refused client should wait: the backlog, at least the option."""
        return math.ceil(max(self.options.retry_after_s, lag_s))

    def admit(self, lag_s: float) -> None:
        """At connect: raise Late when the live finals already wait past `max_lag_s`.

        A connection that has not spoken costs no decoding, so how many there are does
        not matter here (the transport limits them).
        """
        if self.enabled and lag_s > self.options.max_lag_s:
            retry = self.retry_after(lag_s)
            raise Late(f"the server is behind by {lag_s:.1f} s; retry after {retry} s or "
                       "try another server", retry_after_s=retry)

    def speech_started(self, speaking: int, lag_s: float) -> Decision:
        """A session starts speaking; `speaking` counts it and every other speaker."""
        soft, hard = self.capacity(), self.hard_capacity()
        if soft is None or hard is None:
            return Decision.SPEAK
        # The finals that waited were others': with nobody else speaking, none get later.
        if speaking > hard or lag_s > self.options.max_lag_s or (
                speaking > 1 and self._finals_wait()):
            return Decision.REFUSE
        return Decision.SHED if speaking > soft else Decision.SPEAK

    def refusal(self, speaking: int, lag_s: float) -> AtCapacity:
        """The error a refused speaker is told, with when to try again."""
        retry = self.retry_after(lag_s)
        wait = self.recent_final_wait()
        if lag_s > self.options.max_lag_s:
            why = f"the decoders are behind by {lag_s:.1f} s"
        elif speaking <= (self.hard_capacity() or 0):
            why = (f"the finals of the {speaking - 1} sessions speaking already wait "
                   f"{wait:.1f} s to be decoded")
        else:
            why = (f"{speaking - 1} sessions are speaking, the most whose finals keep up "
                   f"is {self.hard_capacity()}")
        return AtCapacity(f"the server is at capacity: {why}; retry after {retry} s or try "
                          "another server", retry_after_s=retry)


class SpeechGrace:
    """Whether a session counts as speaking: it speaks now, or did within `grace_s`.

    `update` is told after each piece of audio whether the session speaks now; it says
    when the session starts speaking after being idle, the moment admission is asked.
    """

    def __init__(self, grace_s: float, clock: Callable[[], float] | None = None) -> None:
        self.grace_s = grace_s
        self._clock = clock or time.monotonic
        self._last: float | None = None  # when it last spoke

    def recent(self) -> bool:
        return self._last is not None and self._clock() - self._last < self.grace_s

    def update(self, speaking_now: bool) -> bool:
        """Note the session's state; True when it starts speaking from idle."""
        if not speaking_now:
            return False
        started = not self.recent()
        self._last = self._clock()
        return started
