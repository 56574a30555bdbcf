"""What every connection shares: the options, the model, the scheduler, the sessions.

It imports no handler module: the handlers (stream, viewer, transcribe, pages) take a
`ServerContext`, and `transport/server.py` builds one and wires them to it. Admission
lives here: at connect (`admit`) and when a session starts speaking (`speech_started`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from captioncast import __version__
from captioncast.core.decoding import Decoder
from captioncast.core.params import StreamParams
from captioncast.engine.capacity import Decision
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import BadRequest, Overloaded
from captioncast.fanout.archive import Archive
from captioncast.fanout.hub import ChannelHub
from captioncast.fanout.output_sink import OutputCollector, OutputSink
from captioncast.options import ServerOptions
from captioncast.outputs import OutputRegistry
from captioncast.session.registry import Registered, SessionRegistry
from captioncast.telemetry.measures import Telemetry
from captioncast.telemetry.metrics import Metrics
from captioncast.transport.security import Gatekeeper, TooManyConnections

log = logging.getLogger("captioncast.admission")


class ServerContext:
    """The server's shared state; one per `run_server`."""

    def __init__(self, options: ServerOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.clock = clock  # when sessions last spoke (tests set their own)
        self.decoder: Decoder | None = None
        self._scheduler: DecodeScheduler | None = None
        self.model_name = options.model
        self.multilingual = False
        self.sessions = SessionRegistry(options.max_sessions)
        self.channels = ChannelHub(options.channels)
        self.gate = Gatekeeper(options.security)
        self.telemetry = Telemetry(options.capacity)
        self.telemetry.on_scrape(self._gauges)
        self.outputs = OutputRegistry()  # channels' caption outputs (fanout/output_sink.py)
        self.channels.sinks.append(OutputSink(self.outputs))
        self.telemetry.metrics.registry.register(OutputCollector(self.outputs))
        self.draining = False
        self.archive: Archive | None = None  # the transcript store; None: memory only

    @property
    def ready(self) -> bool:
        return self._scheduler is not None and not self.draining

    @property
    def scheduler(self) -> DecodeScheduler:
        assert self._scheduler is not None, "sessions start only once the model is loaded"
        return self._scheduler

    def attach(self, decoder: Decoder, scheduler: DecodeScheduler) -> None:
        """The model is loaded: sessions may start."""
        self.decoder = decoder
        self._scheduler = scheduler
        self.telemetry.attach(scheduler)
        self.model_name = decoder.name
        self.multilingual = decoder.multilingual

    def admit(self, address: str | None = None, token_key: str | None = None) -> None:
        """Raise Overloaded unless a new stream may connect now.

        A connected session that does not speak costs no decoding: it is refused only
        when the decoders are already late, at the session limit, or when its address or
        token holds too many idle sessions.
        """
        if self._scheduler is None:
            raise Overloaded("the model is still loading; try again in a few seconds",
                             retry_after_s=5)
        if self.draining:
            raise Overloaded("the server is shutting down")
        try:
            self.sessions.make_room()
            self._idle_limits(address, token_key)
            self.telemetry.capacity.admit(self._scheduler.lag())
        except Overloaded as error:
            self._decided("connect_refused", address or "-", error.message)
            raise
        self._decided("connect", address or "-")

    def _idle_limits(self, address: str | None, token_key: str | None) -> None:
        security, retry = self.options.security, self.telemetry.capacity.retry_after()
        limit = security.max_idle_per_ip
        if limit and self.sessions.idle_from(address) >= limit:
            raise TooManyConnections(
                f"too many idle sessions from {address}: the limit is {limit} per address "
                f"(max_idle_per_ip); retry after {retry} s", retry_after_s=retry)
        limit = security.max_idle_per_token
        if limit and token_key is not None and self.sessions.idle_with(token_key) >= limit:
            raise TooManyConnections(
                f"too many idle sessions with this token: the limit is {limit} per token "
                f"(max_idle_per_token); retry after {retry} s", retry_after_s=retry)

    def speech_started(self, session: Registered) -> Decision:
        """`session` starts speaking: SPEAK, SHED (finals only), or raise Overloaded."""
        meter, lag = self.telemetry.capacity, self.scheduler.lag()
        speaking = self.sessions.speaking
        decision = meter.speech_started(speaking, lag)
        self._decided(decision.value, session.session_id)
        if decision is Decision.REFUSE:
            raise meter.refusal(speaking, lag)
        return decision

    def _decided(self, decision: str, who: str, why: str = "") -> None:
        meter = self.telemetry.capacity
        lag = self._scheduler.lag() if self._scheduler is not None else 0.0
        log.info("event=admission decision=%s who=%s speaking=%d connected=%d capacity=%s "
                 "hard_capacity=%s lag_s=%.2f%s", decision, who, self.sessions.speaking,
                 self.sessions.connected, meter.capacity(), meter.hard_capacity(), lag,
                 f" message={why!r}" if why else "")
        self.telemetry.admission(decision)

    def check_model_support(self, params: StreamParams) -> None:
        """BadRequest if the loaded model cannot do what `params` ask."""
        if self.multilingual:
            return
        if params.language not in (None, "en", "auto"):
            raise BadRequest(
                f"model {self.model_name} is English-only: language={params.language} needs a "
                "multilingual model (start the server with --model base)"
            )
        if params.task == "translate":
            raise BadRequest(
                f"model {self.model_name} is English-only: task=translate needs a "
                "multilingual model"
            )

    def attach_store(self, archive: Archive) -> None:
        """Finals are stored from now on, and channels continue from the store."""
        self.archive = archive
        self.channels.store = archive
        archive.register(self.telemetry.metrics.registry)

    def viewers_changed(self) -> None:
        self.telemetry.viewers(self.channels.viewer_count)

    @property
    def connected_sessions(self) -> int:
        return self.sessions.connected

    def _gauges(self, metrics: Metrics) -> None:
        metrics.sessions.set(len(self.sessions))
        metrics.speaking.set(self.sessions.speaking)
        metrics.viewers.set(self.channels.viewer_count)

    def health(self) -> dict[str, object]:
        """The body of /healthz."""
        return {
            "status": "ok" if self.ready else ("draining" if self.draining else "loading"),
            "version": __version__,
            "model": self.model_name,
            "multilingual": self.multilingual,
            "sessions": len(self.sessions),
            "connected_sessions": self.sessions.connected,
            "speaking_sessions": self.sessions.speaking,
            "viewers": self.channels.viewer_count,
            "max_sessions": self.options.max_sessions,
            **self.telemetry.load(),
            "store": self.archive.health() if self.archive is not None else {"status": "off"},
        }
