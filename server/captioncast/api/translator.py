"""What a wire format's translator is, and the port through which it drives a session.

A translator is sans-I/O, as python-websockets' protocol layer is: the one connection
handler (transport/stream.py's `Connection`) hands it each client message and each
session event; it drives the session through a `Port` (audio, control, errors, and
messages of its own for the client) and renders events as the strings to send. It
never sees a socket or an event loop, so a test drives it with a recording port.
"""

from __future__ import annotations

from typing import Protocol

from captioncast.core.params import Configure
from captioncast.errors import CaptioncastError
from captioncast.protocol.events import Event


class Port(Protocol):
    """What a translator may ask of its session and its connection."""

    def audio(self, pcm: bytes) -> None:
        """Client PCM in the session's format (frame size and eos checked on the way)."""

    def control(self, kind: str) -> None:
        """`keepalive`, `flush` or `eos` (core/params.py's control kinds)."""

    def name_speaker(self, label: str, name: str) -> None:
        """Give the voice `label` a name (PROTOCOL.md "Speakers"); UnknownSpeaker if the
        session has no such label."""

    def configure(self, change: Configure) -> None:
        """New settings mid-stream; BadControlMessage when they cannot apply here."""

    def report(self, error: CaptioncastError) -> None:
        """A non-fatal error: said as the session's own error event."""

    def say(self, message: str) -> None:
        """A message of the translator's own to the client, in order with the events."""

    @property
    def in_speech(self) -> bool:
        """The session's segmenter is inside an utterance."""

    @property
    def open_utterance(self) -> int | None:
        """The utterance under way, if any."""

    @property
    def utterances_begun(self) -> int:
        """How many utterances the session has begun."""


class Translator(Protocol):
    """One connection's wire format: client messages in, session commands out; events in,
    messages out."""

    # True: an event is rendered when the session says it, in order with the messages the
    # translator says itself; False: when the send loop reaches it (after its commit).
    eager: bool

    def start(self, port: Port) -> None:
        """The connection is attached to its session: before its messages are read."""

    def binary(self, frame: bytes, port: Port) -> None:
        """A binary message from the client."""

    def text(self, message: str, port: Port) -> None:
        """A text message from the client."""

    def render(self, event: Event) -> list[str]:
        """The messages that say `event` on this connection."""

    def close(self, code: int, reason: str) -> tuple[int, str]:
        """The close frame for the one the session asks for."""
