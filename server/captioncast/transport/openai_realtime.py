"""OpenAI's Realtime transcription, `GET /v1/realtime?intent=transcription`, onto a LiveSession.

The session's settings (input format, language, prompt, turn detection) come in
`session.update` (or the beta `transcription_session.update`) before the first
audio; the LiveSession opens on the first `input_audio_buffer.append`, with them.
Which conversation item our events speak of is api/realtime_items.py's: with
`server_vad` each of our utterances is an item (our segmenter commits it); with turn
detection off, `input_audio_buffer.commit` ends the turn (a flush of the utterance
under way) and all the audio appended since the last commit is one item.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from captioncast.api.realtime_config import RealtimeConfig, RealtimeWire, SessionFlavour
from captioncast.api.realtime_items import ItemWire, TurnItems, VadItems
from captioncast.core.params import MAX_PROMPT_CHARS, StreamParams
from captioncast.errors import BadControlMessage, BadRequest, CaptioncastError, Unauthorized
from captioncast.protocol import codes
from captioncast.protocol.events import Error, Event, Final, Partial
from captioncast.session.live_session import LiveSession
from captioncast.transport.compat import (
    ALAW,
    ULAW,
    endpointing_policy,
    g711_decoder,
    open_session,
    serve,
)
from captioncast.transport.responses import HttpResponse, json_response, status_of
from captioncast.transport.server_context import ServerContext
from captioncast.transport.stream import StreamHandler
from captioncast.transport.websocket import close_or_abort

FORMATS: dict[str, tuple[int, Callable[[bytes], bytes] | None]] = {
    "audio/pcm": (24000, None), "pcm16": (24000, None),
    "audio/pcmu": (8000, g711_decoder(ULAW)), "g711_ulaw": (8000, g711_decoder(ULAW)),
    "audio/pcma": (8000, g711_decoder(ALAW)), "g711_alaw": (8000, g711_decoder(ALAW)),
}
# OpenAI refuses to commit less audio than this (`input_audio_buffer_commit_empty`).
MIN_COMMIT_MS = 100


def openai_error(status: int, message: str, code: str | None) -> HttpResponse:
    return json_response(status, {"error": {"message": message, "type": "invalid_request_error",
                                            "param": None, "code": code}})


def vet_upgrade(ctx: ServerContext, request: Request) -> HttpResponse | None:
    """Before the upgrade: OpenAI's 401 for a bad key; only transcription sessions."""
    try:
        ctx.gate.authorize(request.path, request.headers)
    except Unauthorized as error:
        return openai_error(401, error.message, "invalid_api_key")
    query = dict(_query(request.path))
    if query.get("intent") != "transcription":
        return openai_error(400, "this server runs transcription sessions only: connect to "
                            "/v1/realtime?intent=transcription", "invalid_intent")
    if not ctx.ready:
        return openai_error(503, "the model is still loading or the server is shutting down",
                            "server_unavailable")
    return None


def _query(target: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(target).query)


class RealtimeHandler(StreamHandler):
    """A transcription session once audio flows: our events as OpenAI's server events."""

    def __init__(self, connection: ServerConnection, live: LiveSession, config: RealtimeConfig,
                 wire: RealtimeWire, decode: Callable[[bytes], bytes] | None,
                 first_audio: bytes) -> None:
        super().__init__(connection, live)
        self.config = config
        self.wire = wire
        self.decode = decode
        items = ItemWire(wire, config.flavour, "item_" + secrets.token_hex(6))
        self.vad = VadItems(items) if config.server_vad else None
        self.turns = None if config.server_vad else TurnItems(items, live.params.sample_rate)
        self._first: bytes | None = first_audio  # the append that opened the session

    # -- server events -----------------------------------------------------------------

    def send(self, event: Event | str, after: Awaitable[bool] | None = None) -> None:
        # Rendered now, not when the send loop reaches it: which item a final belongs to
        # depends on the commits and clears before it, in the order they came. (These
        # sessions have no channel, so there is no commit to the store to wait for.)
        if isinstance(event, str):
            super().send(event, after)
            return
        for message in self.render(event):
            super().send(message, after)
            after = None

    def render(self, event: Event) -> list[str]:
        if isinstance(event, Error):
            return [self.wire.error(event.message, event.code,
                                    kind="server_error" if event.code == "internal"
                                    else "invalid_request_error")]
        if not isinstance(event, Partial | Final):
            return []
        if self.vad is not None:
            return self.vad.render(event)
        assert self.turns is not None
        return self.turns.render(event)

    # -- client events -----------------------------------------------------------------

    def _audio(self, frame: bytes) -> None:
        self.live.report(BadControlMessage(
            "binary frames are not part of the Realtime API: send input_audio_buffer.append"))

    def append(self, audio: bytes) -> None:
        pcm = self.decode(audio) if self.decode is not None else audio
        super()._audio(pcm)
        if self.turns is not None:
            self.turns.append(len(pcm) // 2)  # s16le mono samples, for the turn's length

    def _control(self, text: str) -> None:
        try:
            message = parse_client_event(text)
        except BadRequest as error:
            self.send(self.wire.error(error.message, "invalid_event"))
            return
        kind, client_event = message["type"], message.get("event_id")
        if kind == "input_audio_buffer.append":
            try:
                self.append(audio_of(message))
            except BadRequest as error:
                self.send(self.wire.error(error.message, "invalid_value", client_event))
        elif kind == "input_audio_buffer.commit":
            self._commit(client_event)
        elif kind == "input_audio_buffer.clear":
            self._clear()
            self.send(self.wire.event("input_audio_buffer.cleared"))
        elif kind in ("session.update", "transcription_session.update"):
            try:
                self.config.update(message.get("session"), locked=True)
            except BadRequest as error:
                self.send(self.wire.error(error.message, "invalid_value", client_event))
                return
            self.send(self.config.updated(self.wire, kind))
        else:
            self.send(self.wire.error(f"event type {kind} is not supported in a "
                                      "transcription session", "invalid_event", client_event))

    def _commit(self, client_event: str | None) -> None:
        """Turn detection off: what was appended since the last commit is one item. With
        VAD, a commit ends the utterance under way now, as OpenAI's commits the buffer."""
        turns = self.turns
        if turns is None:
            if self.live.core.open_utterance is None:
                self.send(self.wire.error(empty_commit(0.0),
                                          "input_audio_buffer_commit_empty", client_event))
                return
            self.live.control("flush")  # its item is committed as the VAD's are
            return
        if turns.pending_ms < MIN_COMMIT_MS:
            self.send(self.wire.error(empty_commit(turns.pending_ms),
                                      "input_audio_buffer_commit_empty", client_event))
            return
        for message in turns.commit():
            self.send(message)
        self.live.control("flush")  # ends the utterance under way: it is in this turn
        for message in turns.seal(self.live.core.utterances_begun):
            self.send(message)

    def _clear(self) -> None:
        """Drop the audio not committed yet: with server_vad the utterance under way (those
        the VAD ended are committed), without it the whole turn since the last commit."""
        if self.vad is not None:
            self.vad.clear(self.live.core.open_utterance)
            self.live.control("flush")
            return
        assert self.turns is not None
        self.turns.clear()
        self.live.control("flush")
        self.turns.seal(self.live.core.utterances_begun)

    async def run(self, first: list[Event]) -> None:
        # Attached now: what the first audio makes the session say reaches this connection.
        if self._first is not None:
            self.append(self._first)
            self._first = None
        await super().run(first)


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


async def handle_realtime(connection: ServerConnection, ctx: ServerContext) -> None:
    """Settings first, then the session on the first audio."""
    assert connection.request is not None
    flavour = (SessionFlavour.BETA if "realtime=v1" in connection.request.headers.get(
        "OpenAI-Beta", "") else SessionFlavour.GA)
    config = RealtimeConfig(flavour, ctx.model_name)
    wire = RealtimeWire()
    try:
        await connection.send(config.created(wire))
        first = await _settings(connection, ctx, config, wire)
    except ConnectionClosed:
        return
    if first is None:
        return
    rate, decode = FORMATS[config.format]
    language = config.language
    # Without turn detection nothing is said before a commit: no partials to decode.
    params = StreamParams(sample_rate=rate, language=language or "auto",
                          prompt=config.prompt[:MAX_PROMPT_CHARS], interim=config.server_vad)
    try:
        ctx.check_model_support(params)
        live = open_session(connection, ctx, params, endpointing_policy(ctx.options.policy,
                                                            config.silence_ms))
    except CaptioncastError as error:
        ctx.telemetry.refused(error.code)
        await connection.send(wire.error(error.message, error.code,
                                         kind="server_error" if status_of(error) >= 500
                                         else "invalid_request_error"))
        await close_or_abort(connection, ctx.options.shutdown.close_timeout_s,
                             error.close_code or codes.INTERNAL, error.message)
        return
    await serve(RealtimeHandler(connection, live, config, wire, decode, first))


async def _settings(connection: ServerConnection, ctx: ServerContext, config: RealtimeConfig,
                    wire: RealtimeWire) -> bytes | None:
    """Answer client events until the first audio, which is returned (None: closed)."""
    while True:
        try:
            async with asyncio.timeout(ctx.options.idle_timeout_s or None):
                text = await connection.recv()
        except TimeoutError:
            await close_or_abort(connection, ctx.options.shutdown.close_timeout_s,
                                 codes.POLICY, "no audio")
            return None
        if isinstance(text, bytes):
            await connection.send(wire.error("send audio in input_audio_buffer.append events",
                                             "invalid_event"))
            continue
        client_event: str | None = None
        try:
            message = parse_client_event(text)
            kind, client_event = message["type"], message.get("event_id")
            if kind == "input_audio_buffer.append":
                audio = audio_of(message)
                if audio:
                    return audio
            elif kind in ("session.update", "transcription_session.update"):
                config.update(message.get("session"), locked=False)
                if config.language:
                    ctx.check_model_support(StreamParams(language=config.language))
                await connection.send(config.updated(wire, kind))
            elif kind == "input_audio_buffer.commit":
                await connection.send(wire.error(
                    empty_commit(0.0), "input_audio_buffer_commit_empty", client_event))
            elif kind == "input_audio_buffer.clear":
                await connection.send(wire.event("input_audio_buffer.cleared"))
            else:
                await connection.send(wire.error(
                    f"event type {kind} is not supported in a transcription session",
                    "invalid_event", client_event))
        except BadRequest as error:
            await connection.send(wire.error(error.message, "invalid_value", client_event))

