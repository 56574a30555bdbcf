"""OpenAI's Realtime transcription, `GET /v1/realtime?intent=transcription`, sans-I/O.

The session's settings (input format, language, prompt, turn detection) come in
`session.update` (or the beta `transcription_session.update`) before the first
audio; the session opens on the first `input_audio_buffer.append`, with them
(transport/compat_routes.py). One dispatch answers client events in both phases.
Which conversation item our events speak of is api/realtime_items.py's: with
`server_vad` each of our utterances is an item (our segmenter commits it); with
`semantic_vad` each of our turns (api/realtime_turns.py; the session follows turns, by
eagerness); with turn detection off, `input_audio_buffer.commit` ends the turn (a flush
of the utterance under way) and all the audio appended since the last commit is one item.
`speech_started` comes from the session's VAD as speech begins, not with the first words.
Once audio flows, `session.update` changes the language, prompt and eagerness of the
running session (`Port.configure`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from typing import Any

from captioncast.api.g711 import ALAW, ULAW, g711_decoder
from captioncast.api.realtime_config import RealtimeConfig, RealtimeWire, SessionFlavour
from captioncast.api.realtime_items import ItemWire, TurnItems, VadItems
from captioncast.api.realtime_turns import SemanticItems
from captioncast.api.translator import Port
from captioncast.core.params import MAX_PROMPT_CHARS, Configure, StreamParams
from captioncast.errors import BadControlMessage, BadRequest
from captioncast.protocol.events import Error, Event, Final, Partial, SpeechStarted, Turn

FORMATS: dict[str, tuple[int, Callable[[bytes], bytes] | None]] = {
    "audio/pcm": (24000, None), "pcm16": (24000, None),
    "audio/pcmu": (8000, g711_decoder(ULAW)), "g711_ulaw": (8000, g711_decoder(ULAW)),
    "audio/pcma": (8000, g711_decoder(ALAW)), "g711_alaw": (8000, g711_decoder(ALAW)),
}
# OpenAI refuses to commit less audio than this (`input_audio_buffer_commit_empty`).
MIN_COMMIT_MS = 100
UPDATES = ("session.update", "transcription_session.update")


def error_body(message: str, code: str | None) -> dict[str, Any]:
    """A refused handshake's body, as OpenAI's."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}


def empty_commit(pending_ms: float) -> str:
    """OpenAI's message for a commit of too little audio."""
    return (f"Error committing input audio buffer: buffer too small. Expected at least "
            f"{MIN_COMMIT_MS}ms of audio, but buffer only has {pending_ms:.2f}ms of audio.")


def parse_client_event(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise BadRequest("client events must be JSON objects") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadRequest("client events must be JSON objects with a type")
    return message


def audio_of(message: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(message.get("audio", "")), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("audio must be base64-encoded") from None


class RealtimeTranslator:
    """A transcription session: settings first, then our events as OpenAI's server events.

    Before the session opens (`first_audio` is None), `settings` answers each client event;
    `open` then gives the session's parameters, and the connection handler drives the
    rest through the `Translator` methods.
    """

    # Rendered when the session says it, not when the send loop reaches it: which item a
    # final belongs to depends on the commits and clears before it, in the order they
    # came. (These sessions have no channel, so there is no commit to the store to wait for.)
    eager = True

    def __init__(self, flavour: SessionFlavour, model_name: str,
                 check_model: Callable[[StreamParams], None]) -> None:
        """`check_model`: BadRequest when the loaded model cannot do what params ask."""
        self.config = RealtimeConfig(flavour, model_name)
        self.wire = RealtimeWire()
        self._check_model = check_model
        self.first_audio: bytes | None = None  # the append that opens the session
        self.decode: Callable[[bytes], bytes] | None = None
        self.vad: VadItems | None = None  # server_vad
        self.semantic: SemanticItems | None = None  # semantic_vad
        self.turns: TurnItems | None = None  # turn detection off: the client commits

    def greeting(self) -> str:
        """`session.created` (or the beta's), sent as the connection opens."""
        return self.config.created(self.wire)

    def settings(self, message: str | bytes) -> list[str]:
        """Before the session: the answers to one client event. An append with audio
        sets `first_audio`: the session opens with it."""
        said: list[str] = []
        if isinstance(message, bytes):
            said.append(self.wire.error("send audio in input_audio_buffer.append events",
                                        "invalid_event"))
        else:
            self._dispatch(message, said.append, None)
        return said

    def open(self) -> StreamParams:
        """The settings are final: the session's parameters (the pause that ends an
        utterance is `config.silence_ms`)."""
        rate, self.decode = FORMATS[self.config.format]
        items = ItemWire(self.wire, self.config.flavour, "item_" + secrets.token_hex(6))
        config = self.config
        if config.semantic:
            self.semantic = SemanticItems(items)
        elif config.server_vad:
            self.vad = VadItems(items)
        else:
            self.turns = TurnItems(items, rate)
        # Without turn detection nothing is said before a commit: no partials to decode.
        # server_vad's utterances end at its pause, and its speech_started is the VAD's.
        return StreamParams(sample_rate=rate, language=config.language or "auto",
                            prompt=config.prompt[:MAX_PROMPT_CHARS],
                            interim=config.server_vad, turns=config.turns,
                            speech_events=config.server_vad and not config.semantic)

    def refusal(self, message: str, code: str, server_side: bool) -> str:
        """The error event for a session that could not open."""
        return self.wire.error(message, code, kind="server_error" if server_side
                               else "invalid_request_error")

    # -- Translator: the session's events out --------------------------------------------

    def render(self, event: Event) -> list[str]:
        if isinstance(event, Error):
            return [self.wire.error(event.message, event.code,
                                    kind="server_error" if event.code == "internal"
                                    else "invalid_request_error")]
        if self.semantic is not None and isinstance(event, SpeechStarted | Turn | Partial
                                                    | Final):
            return self.semantic.render(event)
        if self.vad is not None and isinstance(event, SpeechStarted | Partial | Final):
            return self.vad.render(event)
        if self.turns is not None and isinstance(event, Partial | Final):
            return self.turns.render(event)
        return []

    def close(self, code: int, reason: str) -> tuple[int, str]:
        return code, reason

    # -- Translator: client events in -----------------------------------------------------

    def start(self, port: Port) -> None:
        # Attached now: what the first audio makes the session say reaches this connection.
        if self.first_audio is not None:
            self._append(self.first_audio, port)
            self.first_audio = None

    def binary(self, frame: bytes, port: Port) -> None:
        port.report(BadControlMessage(
            "binary frames are not part of the Realtime API: send input_audio_buffer.append"))

    def text(self, message: str, port: Port) -> None:
        self._dispatch(message, port.say, port)

    def _dispatch(self, text: str, say: Callable[[str], None], port: Port | None) -> None:
        """One client event, before the session (`port` None) or in it."""
        try:
            message = parse_client_event(text)
        except BadRequest as error:
            # Before the session this was always answered as a bad value: kept as it was.
            say(self.wire.error(error.message,
                                "invalid_value" if port is None else "invalid_event"))
            return
        kind, client_event = message["type"], message.get("event_id")
        if kind == "input_audio_buffer.append":
            try:
                audio = audio_of(message)
                if port is not None:
                    self._append(audio, port)
                elif audio:
                    self.first_audio = audio
            except BadRequest as error:
                say(self.wire.error(error.message, "invalid_value", client_event))
        elif kind == "input_audio_buffer.commit":
            if port is None:
                say(self.wire.error(empty_commit(0.0), "input_audio_buffer_commit_empty",
                                    client_event))
            else:
                self._commit(client_event, port)
        elif kind == "input_audio_buffer.clear":
            if port is not None:
                self._clear(port)
            say(self.wire.event("input_audio_buffer.cleared"))
        elif kind in UPDATES:
            try:
                self.config.update(message.get("session"),
                                   None if port is None else self._configure(port))
                if port is None and self.config.language:
                    self._check_model(StreamParams(language=self.config.language))
            except (BadRequest, BadControlMessage) as error:
                say(self.wire.error(error.message, "invalid_value", client_event))
                return
            say(self.config.updated(self.wire, kind))
        else:
            say(self.wire.error(f"event type {kind} is not supported in a transcription "
                                "session", "invalid_event", client_event))

    def _configure(self, port: Port) -> Callable[[Configure], None]:
        """The running session's new settings, through the port; a language the model
        cannot do is refused first."""
        def configure(change: Configure) -> None:
            if change.language not in (None, "auto"):
                self._check_model(StreamParams(language=change.language))
            port.configure(change)
        return configure

    def _append(self, audio: bytes, port: Port) -> None:
        pcm = self.decode(audio) if self.decode is not None else audio
        port.audio(pcm)
        if self.turns is not None:
            self.turns.append(len(pcm) // 2)  # s16le mono samples, for the turn's length

    def _commit(self, client_event: str | None, port: Port) -> None:
        """Turn detection off: what was appended since the last commit is one item. With
        VAD, a commit ends the utterance under way now, as OpenAI's commits the buffer."""
        turns = self.turns
        if turns is None:
            if port.open_utterance is None:
                port.say(self.wire.error(empty_commit(0.0), "input_audio_buffer_commit_empty",
                                         client_event))
                return
            port.control("flush")  # its item is committed as the VAD's are
            return
        if turns.pending_ms < MIN_COMMIT_MS:
            port.say(self.wire.error(empty_commit(turns.pending_ms),
                                     "input_audio_buffer_commit_empty", client_event))
            return
        for message in turns.commit():
            port.say(message)
        port.control("flush")  # ends the utterance under way: it is in this turn
        for message in turns.seal(port.utterances_begun):
            port.say(message)

    def _clear(self, port: Port) -> None:
        """Drop the audio not committed yet: with server_vad the utterance under way (those
        the VAD ended are committed), without it the whole turn since the last commit."""
        if self.vad is not None:
            self.vad.clear(port.open_utterance)
            port.control("flush")
            return
        if self.semantic is not None:
            self.semantic.clear()
            port.control("flush")
            return
        assert self.turns is not None
        self.turns.clear()
        port.control("flush")
        self.turns.seal(port.utterances_begun)
