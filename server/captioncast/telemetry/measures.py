"""What the server measures, in one place: the Prometheus metrics, latencies, capacity.

`Telemetry` is the one object every session, viewer and decode reports to; `/metrics`,
`/healthz` and admission read from it. `StreamLatency` is one stream's share: when its
audio arrived, and how long after that its partials and finals went out, the way a
client measures it.
"""

from __future__ import annotations

import bisect
import statistics
import time
from collections import deque
from collections.abc import Callable

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.decoding import DecodeRequest
from captioncast.core.quality import CaptionQuality
from captioncast.engine.capacity import CapacityMeter, CapacityOptions
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.protocol.events import Error, Event, Final, Partial
from captioncast.telemetry.metrics import Metrics

LATENCY_SAMPLES = 1000  # percentiles over the recent finals suffice
ARRIVALS_KEPT = 4096  # an hour of 20 ms frames would grow without bound
ARRIVALS_DROPPED = 2048


class Latencies:
    """The last LATENCY_SAMPLES latencies, for their percentiles."""

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def __len__(self) -> int:
        return len(self._samples)

    def p50(self) -> float | None:
        """The median, or None before the first sample."""
        return statistics.median(self._samples) if self._samples else None

    def p50_low(self) -> float | None:
        """The sample at half the sorted list (what /healthz has always reported)."""
        latencies = sorted(self._samples)
        return latencies[len(latencies) // 2] if latencies else None

    def p95(self) -> float | None:
        latencies = sorted(self._samples)
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]


class ArrivalClock:
    """When each audio position arrived, to measure latency the way clients do."""

    def __init__(self) -> None:
        self._positions: list[int] = []
        self._times: list[float] = []

    def add(self, position: int, at: float) -> None:
        self._positions.append(position)
        self._times.append(at)
        if len(self._positions) > ARRIVALS_KEPT:
            del self._positions[:ARRIVALS_DROPPED], self._times[:ARRIVALS_DROPPED]

    def time_of(self, position: int) -> float | None:
        i = bisect.bisect_left(self._positions, position)
        return self._times[i] if i < len(self._times) else None


class Telemetry:
    """Counters, gauges and latencies for the whole server."""

    def __init__(self, capacity: CapacityOptions) -> None:
        self.metrics = Metrics()
        self.final_latencies = Latencies()
        self.started = time.monotonic()
        self._capacity_options = capacity
        self.capacity = CapacityMeter(1, capacity)
        self._scheduler: DecodeScheduler | None = None
        self._dropped_seen = 0
        self._busy_seen = 0
        self._gauges: list[Callable[[Metrics], None]] = []
        self.metrics.on_scrape(self._refresh_gauges)

    def attach(self, scheduler: DecodeScheduler) -> None:
        """The model is loaded: capacity is measured against its decode workers."""
        self._scheduler = scheduler
        self.capacity = CapacityMeter(scheduler.workers, self._capacity_options)

    def on_scrape(self, refresh: Callable[[Metrics], None]) -> None:
        """A gauge someone else knows (sessions, viewers), read at scrape time."""
        self._gauges.append(refresh)

    # -- what sessions, viewers and the scheduler report --------------------------------

    def session_started(self) -> None:
        self.metrics.sessions_total.inc()

    def admission(self, decision: str) -> None:
        """One admission decision (engine/capacity.py; `connect` or `connect_refused`)."""
        self.metrics.admission.labels(decision).inc()

    def refused(self, code: str) -> None:
        self.metrics.refused.labels(code).inc()

    def viewers(self, count: int) -> None:
        self.metrics.viewers.set(count)

    def audio(self, seconds: float) -> None:
        self.metrics.audio_seconds.inc(seconds)

    def final(self, latency: float | None) -> None:
        self.metrics.finals.inc()
        if latency is not None:
            self.final_latencies.add(latency)
            self.metrics.final_latency.observe(latency)

    def caption_quality(self, added: CaptionQuality) -> None:
        """A session's captions since it last reported (core/quality.py)."""
        m = self.metrics
        # of the words partials showed as stable, how many the final changed (protocol 2)
        m.stable_words.inc(added.stable_words)
        m.stable_words_revised.inc(added.stable_words_revised)
        m.shown_words.inc(added.shown_words)
        m.shown_words_changed.inc(added.shown_words_changed)
        m.empty_finals.inc(added.empty_finals)
        m.final_words.inc(added.final_words)
        m.gaps_filled.inc(added.gaps_filled)

    def partial(self, latency: float | None) -> None:
        self.metrics.partials.inc()
        if latency is not None:
            self.metrics.partial_latency.observe(latency)

    def error(self, code: str) -> None:
        self.metrics.errors.labels(code).inc()

    def decoded(self, request: DecodeRequest, seconds: float, waited: float,
                live: bool) -> None:
        """The scheduler's `on_decoded`: one decode's cost, by kind."""
        kind = request.kind if live else "file"
        m = self.metrics
        m.decode_seconds.labels(kind).observe(seconds)
        m.decode_wait.labels(kind).observe(waited)
        m.decoded_audio.labels(kind).inc(request.duration)
        m.decode_busy.labels(kind).inc(seconds)
        if live:
            self.capacity.record(request.kind, request.duration, seconds, waited)

    # -- what is read back ----------------------------------------------------------------

    def load(self) -> dict[str, object]:
        """The decode side of /healthz."""
        scheduler = self._scheduler
        report = self.capacity.report(scheduler.lag() if scheduler else 0.0)
        p50 = self.final_latencies.p50_low()
        return {
            "queue_depth": scheduler.depth if scheduler else 0,
            "decode_workers": scheduler.workers if scheduler else 0,
            "capacity": report.capacity,  # speakers that fit, from measured decode cost
            "hard_capacity": report.hard_capacity,  # speakers whose finals alone keep up
            "load": report.load,  # share of decode time used over the last minute
            "lag_s": report.lag_s,  # how long the oldest waiting live final has waited
            "final_cost_per_audio_s": report.cost_per_audio_s,
            "final_latency_p50_s": round(p50, 3) if p50 is not None else None,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    def _refresh_gauges(self) -> None:
        m, scheduler = self.metrics, self._scheduler
        for refresh in self._gauges:
            refresh(m)
        if scheduler is None:
            return
        m.queue_depth.set(scheduler.depth)
        m.lag.set(scheduler.lag())
        m.dropped_partials.inc(scheduler.stats.replaced_partials - self._dropped_seen)
        self._dropped_seen = scheduler.stats.replaced_partials
        m.busy_finals.inc(scheduler.stats.busy_finals - self._busy_seen)
        self._busy_seen = scheduler.stats.busy_finals
        if scheduler.stats.audio_seconds:
            m.real_time_factor.set(scheduler.stats.busy_seconds / scheduler.stats.audio_seconds)
        report = self.capacity.report(scheduler.lag())
        m.load.set(report.load)
        if report.capacity is not None:
            m.capacity.set(report.capacity)


class StreamLatency:
    """One stream's latencies: reported to the server's Telemetry, kept for its end log."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.arrivals = ArrivalClock()
        self.finals = Latencies()
        self._counted = CaptionQuality()  # the core's counts already reported

    def arrived(self, position: int) -> None:
        """Audio up to `position` (16 kHz samples) has arrived now."""
        self.arrivals.add(position, time.monotonic())

    def sent(self, event: Event, quality: CaptionQuality | None = None) -> CaptionQuality | None:
        """`event` goes out now; with a final, the core's counts as they stand. Returns what
        they added since the last final (for the channel's counts)."""
        if isinstance(event, Final):
            latency = self._since_arrival(event.end)
            if latency is not None:
                self.finals.add(latency)
            self.telemetry.final(latency)
            if quality is not None:
                added, self._counted = quality - self._counted, quality
                self.telemetry.caption_quality(added)
                return added
        elif isinstance(event, Partial):
            self.telemetry.partial(self._since_arrival(event.end))
        elif isinstance(event, Error):
            self.telemetry.error(event.code)
        return None

    def _since_arrival(self, end_s: float) -> float | None:
        sent = self.arrivals.time_of(int(end_s * MODEL_SAMPLE_RATE))
        return None if sent is None else time.monotonic() - sent
