"""What a live session is tied to: the connection attached to it, and the server that hosts it.

`Link` is what a session asks of its connection (transport/stream.py's `Connection`);
`SessionHost` is what it asks of the server: its options, the scheduler, the channel hub,
the registry, admission and telemetry (transport/server_context.py's `ServerContext`
is one). The session imports neither.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Protocol

from captioncast.engine.capacity import Decision
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.fanout.hub import ChannelHub
from captioncast.options import ServerOptions
from captioncast.protocol import codes
from captioncast.protocol.events import Event
from captioncast.session.registry import Registered, SessionRegistry
from captioncast.session.speaker_rooms import SpeakerRooms
from captioncast.session.turn_stage import TurnJudge
from captioncast.telemetry.measures import Telemetry

TAKEN_OVER = (codes.POLICY, "this session was resumed on another connection")


class State(enum.Enum):
    """STREAMING: audio is taken. ENDING (eos, the session limit, an expired resume window
    or a shutdown): the last finals are decoded, no audio is taken. OVER: released,
    nothing more is said; the log may still be read by a resume."""

    STREAMING = "streaming"
    ENDING = "ending"
    OVER = "over"


class Link(Protocol):
    """The connection attached to a session (transport/stream.py's Connection)."""

    def send(self, event: Event, after: Awaitable[bool] | None = None) -> None:
        """Queue `event`; with `after`, it is sent once that is done (its commit)."""

    def finish(self, code: int, reason: str) -> None:
        """Send what is queued, then close with this code."""

    def take_over(self) -> None:
        """Another connection resumed the session: close this one now."""

    async def wait_closed(self) -> None:
        """Until the connection is closed."""


class SessionHost(Protocol):
    """What a live session uses of the server that hosts it."""

    options: ServerOptions
    model_name: str
    clock: Callable[[], float]  # when sessions last spoke
    channels: ChannelHub
    sessions: SessionRegistry
    telemetry: Telemetry
    speaker_rooms: SpeakerRooms

    @property
    def scheduler(self) -> DecodeScheduler:
        """The shared decoder's scheduler (sessions start once the model is loaded)."""

    @property
    def turn_model(self) -> TurnJudge:
        """The turn model (engine/turn_model.py), loaded when a session first needs it."""

    def speech_started(self, session: Registered) -> Decision:
        """`session` starts speaking: SPEAK, SHED (finals only), or raise Overloaded."""
