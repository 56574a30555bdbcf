"""What every connection shares: the options, the model, the scheduler, the sessions.

It imports no handler module: the handlers (stream, viewer, transcribe, pages) take a
`ServerContext`, and `transport/server.py` builds one and wires them to it. Admission
(session/admission.py) is asked through it: at connect (`admit`) and when a session
starts speaking (`speech_started`). A live session sees it as a `SessionHost`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from captioncast import __version__
from captioncast.core.decoding import Decoder
from captioncast.core.params import StreamParams
from captioncast.engine.capacity import Decision
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.engine.speaker_encoder import load_speaker_encoder
from captioncast.engine.speaker_segmentation import speaker_segmentation
from captioncast.engine.turn_model import TurnModel, load_turn_model
from captioncast.errors import BadRequest
from captioncast.fanout.archive import Archive
from captioncast.fanout.hub import ChannelHub, ChannelSink
from captioncast.fanout.output_sink import OutputCollector, OutputSink
from captioncast.options import ServerOptions
from captioncast.outputs import OutputRegistry
from captioncast.session.admission import Admission
from captioncast.session.registry import Registered, SessionRegistry
from captioncast.session.speaker_rooms import SpeakerRooms
from captioncast.telemetry.measures import Telemetry
from captioncast.telemetry.metrics import Metrics
from captioncast.transport.security import Gatekeeper

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
        self.admission = Admission(self.sessions, self.telemetry, options.security)
        self.outputs = OutputRegistry()  # channels' caption outputs (fanout/output_sink.py)
        self.channels.sinks.append(OutputSink(self.outputs))
        self.telemetry.metrics.registry.register(OutputCollector(self.outputs))
        self.speaker_rooms = SpeakerRooms(
            options.speakers, functools.partial(load_speaker_encoder, options.speakers.encoder),
            self.channels,
            functools.partial(speaker_segmentation, options.speakers.segmentation))
        self._turn_model: TurnModel | None = None
        self._turn_lock = threading.Lock()
        self.draining = False
        self.archive: Archive | None = None  # the transcript store; None: memory only

    @property
    def ready(self) -> bool:
        return self._scheduler is not None and not self.draining

    @property
    def turn_model(self) -> TurnModel:
        """The turn model, loaded the first time a session follows turns."""
        with self._turn_lock:
            if self._turn_model is None:
                self._turn_model = load_turn_model()
            return self._turn_model

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
        """Raise Overloaded unless a new stream may connect now (session/admission.py)."""
        self.admission.admit(self._scheduler, self.draining, address, token_key)

    def speech_started(self, session: Registered) -> Decision:
        """`session` starts speaking: SPEAK, SHED (finals only), or raise Overloaded."""
        return self.admission.speech_started(self.scheduler, session)

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

    # A channel's sinks are attached here, in this order: the outputs (at construction),
    # the store (`attach_store`), the bus (`attach_bus`).

    def attach_bus(self, bridge: ChannelSink) -> None:
        """The MQTT bridge follows every channel from now on, after the outputs."""
        self.channels.sinks.append(bridge)

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
