"""`/metrics` in the Prometheus text format, with prometheus-client.

Each server owns its registry (not the library's global one), so that two servers in
one process (tests, embedding) count separately.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Caption latencies: the interesting range is 0.1 s to a few seconds; beyond 10 s is broken.
LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
DECODE_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge("captioncast_sessions", "Live audio sessions", registry=r)
        self.speaking = Gauge("captioncast_speaking_sessions",
                              "Audio sessions speaking now (or within the grace)", registry=r)
        self.admission = Counter(
            "captioncast_admission",
            "Admission decisions: connect, connect_refused, speak, shed, refuse", ["decision"],
            registry=r)
        self.viewers = Gauge("captioncast_viewers", "Connected caption viewers", registry=r)
        self.sessions_total = Counter("captioncast_sessions_started",
                                      "Audio sessions started", registry=r)
        self.refused = Counter("captioncast_sessions_refused",
                               "Audio sessions refused, by error code", ["code"], registry=r)
        self.audio_seconds = Counter("captioncast_audio_seconds",
                                     "Seconds of audio received (16 kHz, after resampling)",
                                     registry=r)
        self.final_latency = Histogram(
            "captioncast_final_latency_seconds",
            "Final sent minus arrival of the audio at its end", buckets=LATENCY_BUCKETS,
            registry=r)
        self.partial_latency = Histogram(
            "captioncast_partial_latency_seconds",
            "Partial sent minus arrival of the audio at its end", buckets=LATENCY_BUCKETS,
            registry=r)
        self.decode_seconds = Histogram(
            "captioncast_decode_seconds", "Time of one decode, by kind (partial, final, file)",
            ["kind"], buckets=DECODE_BUCKETS, registry=r)
        self.decode_wait = Histogram(
            "captioncast_decode_wait_seconds", "Time a decode waited in the queue, by kind",
            ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.decoded_audio = Counter("captioncast_decoded_audio_seconds",
                                     "Seconds of audio decoded, by kind", ["kind"], registry=r)
        self.decode_busy = Counter("captioncast_decode_busy_seconds",
                                   "Seconds spent decoding, by kind", ["kind"], registry=r)
        self.queue_depth = Gauge("captioncast_queue_depth", "Decodes waiting", registry=r)
        self.lag = Gauge("captioncast_lag_seconds",
                         "How long the oldest waiting live final has waited", registry=r)
        self.real_time_factor = Gauge(
            "captioncast_real_time_factor",
            "Decode seconds per audio second over the server's life (all kinds)", registry=r)
        self.load = Gauge("captioncast_decode_load",
                          "Share of decode capacity used over the last minute", registry=r)
        self.capacity = Gauge("captioncast_capacity_streams",
                              "Estimated live streams this server can keep in real time",
                              registry=r)
        self.dropped_partials = Counter(
            "captioncast_dropped_partials",
            "Partial decodes replaced by a newer one before they ran (coalesced)", registry=r)
        self.busy_finals = Counter(
            "captioncast_busy_finals",
            "Finals decoded with a narrower beam while finals were backlogged", registry=r)
        self.partials = Counter("captioncast_partials", "Partial events sent", registry=r)
        self.finals = Counter("captioncast_finals", "Final events sent", registry=r)
        self.stable_words = Counter("captioncast_stable_words",
                                    "Words shown as stable in the last partial of an utterance",
                                    registry=r)
        self.stable_words_revised = Counter(
            "captioncast_stable_words_revised",
            "Words shown as stable that the utterance's final changed or dropped", registry=r)
        # How the captions read (core/quality.py): flicker, empty finals, reading rate.
        self.shown_words = Counter("captioncast_shown_words", "Words partials put on screen",
                                   registry=r)
        self.shown_words_changed = Counter(
            "captioncast_shown_words_changed",
            "Words a partial showed that a later partial or the final changed or took away "
            "(flicker)", registry=r)
        self.empty_finals = Counter("captioncast_empty_finals",
                                    "Finals that said nothing (no speech after all)", registry=r)
        self.final_words = Counter("captioncast_final_words", "Words the finals said", registry=r)
        self.gaps_filled = Counter(
            "captioncast_gaps_filled",
            "Finals whose skipped speech a second decode put back", registry=r)
        self.errors = Counter("captioncast_errors", "Error events sent, by code", ["code"],
                              registry=r)
        self._refresh: list[Callable[[], None]] = []

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Gauges that are cheaper to read at scrape time than to keep current."""
        self._refresh.append(refresh)

    def render(self) -> bytes:
        for refresh in self._refresh:
            refresh()
        return generate_latest(self.registry)
