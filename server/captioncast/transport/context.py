"""What every connection shares: the options, the model, the scheduler, the sessions.

It imports no handler module: the handlers (stream, viewer, transcribe, pages) take a
`ServerContext`, and `transport/server.py` builds one and wires them to it.
"""

from __future__ import annotations

from captioncast import __version__
from captioncast.core.decoding import Decoder
from captioncast.core.params import StreamParams
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import BadRequest, Overloaded
from captioncast.options import ServerOptions
from captioncast.transport.archive import Archive
from captioncast.transport.channels import ChannelHub
from captioncast.transport.metrics import Metrics
from captioncast.transport.registry import SessionRegistry
from captioncast.transport.security import Gatekeeper
from captioncast.transport.telemetry import Telemetry


class ServerContext:
    """The server's shared state; one per `run_server`."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.decoder: Decoder | None = None
        self._scheduler: DecodeScheduler | None = None
        self.model_name = options.model
        self.multilingual = False
        self.sessions = SessionRegistry(options.max_sessions)
        self.channels = ChannelHub(options.channels)
        self.gate = Gatekeeper(options.security)
        self.telemetry = Telemetry(options.capacity)
        self.telemetry.on_scrape(self._gauges)
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

    def admit(self) -> None:
        """Raise Overloaded unless a new live stream may start now."""
        if self._scheduler is None:
            raise Overloaded("the model is still loading; try again in a few seconds")
        if self.draining:
            raise Overloaded("the server is shutting down")
        self.sessions.make_room()
        # A session waiting for its client to resume decodes nothing: only connected ones
        # cost decoding time.
        self.telemetry.capacity.admit(self.sessions.connected, self._scheduler.lag())

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
            "viewers": self.channels.viewer_count,
            "max_sessions": self.options.max_sessions,
            **self.telemetry.load(),
            "store": self.archive.health() if self.archive is not None else {"status": "off"},
        }
