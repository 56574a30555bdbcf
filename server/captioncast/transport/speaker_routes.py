"""Speakers over HTTP: a channel's speaker table and its names, and enrolled voices.

`GET /v1/channels/NAME/speakers` is the channel's table; `PUT .../speakers/S1` with
`{"name":"Alice"}` names a voice (viewers get a `speakers` event). `POST /v1/speakers`
enrolls a voice from a sample (a form with `name` and `file`, or an audio body with
`?name=`); `GET /v1/speakers` lists them, `DELETE /v1/speakers/ID` deletes one for good.
Voiceprints are personal data: they are kept in the transcript store (in memory with
`--no-store`), never logged and never sent. Every route is behind the server's tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import IO

import numpy as np
from python_multipart.multipart import parse_options_header
from websockets.http11 import Request

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.params import parse_channel_name, parse_speaker_name, parse_voice_name
from captioncast.errors import BadRequest, Overloaded
from captioncast.protocol.events import SpeakerEntry
from captioncast.speakers.enrollment import (
    MAX_SAMPLE_S,
    EnrolledVoice,
    make_voiceprint,
    new_voice_id,
)
from captioncast.speakers.roster import UnknownSpeaker
from captioncast.store import StoredVoice, StoreError
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.responses import HttpResponse, error_response, json_response
from captioncast.transport.server_context import ServerContext
from captioncast.transport.uploads import decode_file, read_form, spool_body

log = logging.getLogger("captioncast.speakers")

CHANNEL_SPEAKERS = re.compile(r"/v1/channels/([^/]+)/speakers")
CHANNEL_SPEAKER = re.compile(r"/v1/channels/([^/]+)/speakers/([^/]+)")
VOICES = re.compile(r"/v1/speakers")
VOICE = re.compile(r"/v1/speakers/([^/]+)")
MAX_NAME_BODY = 4 * 1024  # {"name": ...}: 64 characters and room to spare
MAX_SAMPLE_BYTES = 10 * 1024 * 1024  # a few seconds of speech is enough; WAV minutes fit
EMBED_BUDGET_S = 5.0  # an enrollment waits behind live sessions' work, not behind files
OWNER = "enroll"  # the scheduler's owner of enrollment embeddings
# Raw bodies of these types are decoded as files; a form is multipart/form-data.
RAW_TYPES = ("audio/", "video/", "application/octet-stream")


def _table(channel: str, entries: tuple[SpeakerEntry, ...]) -> HttpResponse:
    return json_response(200, {"channel": channel, "speakers": [e.to_dict() for e in entries]})


def channel_speakers(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels/NAME/speakers: the channel's speaker table (empty if none yet)."""
    match = CHANNEL_SPEAKERS.fullmatch(request.path.partition("?")[0])
    assert match is not None, "routed by CHANNEL_SPEAKERS"
    try:
        name = parse_channel_name(match.group(1))
    except BadRequest as error:
        return error_response(400, error.code, error.message)
    return _table(name, ctx.speaker_rooms.table(name))


def list_voices(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/speakers: the enrolled voices, without their voiceprints."""
    return json_response(200, {
        "speakers": [v.summary() for v in ctx.speaker_rooms.enrolled.values()],
        "kept": _kept(ctx)})


def _kept(ctx: ServerContext) -> str:
    """Where voiceprints live: `store`, or `memory` (`--no-store`: gone at restart)."""
    return "store" if ctx.archive is not None else "memory"


async def load_voices(ctx: ServerContext) -> None:
    """At start: the store's enrolled voices name voices in every roster from now on."""
    if ctx.archive is None:
        return
    try:
        stored = await ctx.archive.store.voices()
    except StoreError as error:
        log.warning("event=voices_not_loaded error=%r", error.message)
        return
    ctx.speaker_rooms.set_enrolled([
        EnrolledVoice.from_voiceprint(v.id, v.name, v.created, v.seconds, v.embedding)
        for v in stored])
    log.info("event=voices_loaded count=%d", len(stored))


class SpeakerRoutes:
    """PUT of a channel's names; POST and DELETE of enrolled voices."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def name(self, request: HttpRequest) -> HttpResponse:
        """PUT /v1/channels/NAME/speakers/ID {"name": ...}: 200 with the channel's table;
        404 for a channel or label that has not been heard, 400 for a bad body."""
        match = CHANNEL_SPEAKER.fullmatch(request.path)
        assert match is not None, "routed by CHANNEL_SPEAKER"
        channel = parse_channel_name(match.group(1))
        body = b"".join([chunk async for chunk in request.body.chunks(MAX_NAME_BODY)])
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadRequest('the body must be JSON: {"name": "Alice"}') from None
        if not isinstance(document, dict):
            raise BadRequest('the body must be a JSON object: {"name": "Alice"}')
        naming = parse_speaker_name(match.group(2), document.get("name"))
        try:
            table = self.ctx.speaker_rooms.name(channel, naming.id, naming.name)
        except UnknownSpeaker as error:
            return error_response(404, "not_found", error.message)
        log.info("event=speaker_named channel=%s label=%s name_chars=%d", channel, naming.id,
                 len(naming.name))
        return _table(channel, table)

    async def enroll(self, request: HttpRequest) -> HttpResponse:
        """POST /v1/speakers: 201 with the new voice (never its voiceprint)."""
        ctx = self.ctx
        if not ctx.ready:
            raise Overloaded("the server is loading or shutting down; retry in a few seconds",
                             retry_after_s=5)
        try:
            name, source = await self._sample(request)
        except UnsupportedType as error:  # the error family has no code for 415
            return error_response(415, error.code, error.message)
        try:
            audio = await asyncio.to_thread(_decode, source)
        finally:
            source.close()
        embedding, seconds = await ctx.scheduler.submit_call(
            OWNER, 0, lambda: make_voiceprint(audio, ctx.speaker_rooms.embed), EMBED_BUDGET_S)
        voice = EnrolledVoice(new_voice_id(), name, time.time(), seconds, embedding)
        if ctx.archive is not None:
            try:
                await ctx.archive.store.add_voice(StoredVoice(
                    voice.id, voice.name, voice.created, voice.seconds, voice.voiceprint()))
            except StoreError as error:
                log.warning("event=voice_not_stored id=%s error=%r", voice.id, error.message)
                raise Overloaded("the transcript store cannot keep the voice now; retry "
                                 "later", retry_after_s=10) from None
        ctx.speaker_rooms.enroll(voice)
        log.info("event=voice_enrolled id=%s name_chars=%d seconds=%.1f kept=%s", voice.id,
                 len(name), seconds, _kept(ctx))
        response = json_response(201, {**voice.summary(), "kept": _kept(ctx)})
        response.headers.append(("Location", f"/v1/speakers/{voice.id}"))
        return response

    async def _sample(self, request: HttpRequest) -> tuple[str, IO[bytes]]:
        """The name and the spooled sample, from a form or a raw body with `?name=`."""
        content_type = request.headers.get("Content-Type", "")
        mime = parse_options_header(content_type)[0].decode("latin-1").lower()
        if mime == "multipart/form-data":
            fields, source = await read_form(request.body, content_type, MAX_SAMPLE_BYTES)
            try:
                names = fields.get("name", [])
                if len(names) != 1:
                    raise BadRequest("the form needs one name field: the speaker's name")
                return parse_voice_name(names[0]), source
            except BaseException:
                source.close()
                raise
        if not mime.startswith(RAW_TYPES):
            raise UnsupportedType(f"Content-Type {mime or 'none'} is not a sample: send "
                                  "multipart/form-data with name and file fields, or an "
                                  "audio body (audio/wav...) with ?name=")
        name = parse_voice_name(request.query_dict().get("name"))
        return name, await spool_body(request.body, MAX_SAMPLE_BYTES)

    async def forget(self, request: HttpRequest) -> HttpResponse:
        """DELETE /v1/speakers/ID: 204; the voiceprint is gone from the store and from
        every roster. 404 for an unknown id."""
        match = VOICE.fullmatch(request.path)
        assert match is not None, "routed by VOICE"
        voice_id = match.group(1)
        stored = False
        if self.ctx.archive is not None:
            try:
                stored = await self.ctx.archive.store.delete_voice(voice_id)
            except StoreError as error:
                raise Overloaded("the transcript store cannot delete the voice now; retry "
                                 f"later ({error.message})", retry_after_s=10) from None
        if not self.ctx.speaker_rooms.forget(voice_id) and not stored:
            return error_response(404, "not_found", f"no enrolled voice {voice_id!r}")
        log.info("event=voice_deleted id=%s", voice_id)
        return HttpResponse(204, b"")


class UnsupportedType(BadRequest):
    """A request body of a media type the route does not take (HTTP 415)."""


def _decode(source: IO[bytes]) -> np.ndarray:
    """The sample as 16 kHz mono float32, at most MAX_SAMPLE_S of it (blocking)."""
    chunks: list[np.ndarray] = []
    held = 0
    limit = int(MAX_SAMPLE_S * MODEL_SAMPLE_RATE)
    for chunk in decode_file(source):
        chunks.append(chunk)
        held += len(chunk)
        if held >= limit:
            break
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
