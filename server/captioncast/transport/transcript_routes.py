"""Channels' transcripts over HTTP: caption files, exports, listing, deletion.

From the store; without one (`--no-store`) the caption files and the listing are what
memory holds (the channel hub's logs). Reads run in worker threads and files are
rendered off the event loop: a 3-hour channel is thousands of finals.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import Request

from captioncast.core.params import parse_channel_name
from captioncast.errors import BadRequest
from captioncast.fanout.archive import Archive, as_event
from captioncast.protocol.captions import (
    by_speaker,
    render_srt,
    render_txt,
    render_vtt,
    to_srt,
    to_vtt,
)
from captioncast.protocol.events import Final, Speakers
from captioncast.store import ChannelInfo, StoredFinal, StoreError
from captioncast.store.transcript_store import MAX_PAGE
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.responses import (
    HttpResponse,
    body_response,
    error_response,
    json_response,
)
from captioncast.transport.server_context import ServerContext

CAPTION_FILE = re.compile(r"/v1/channels/([^/]+)/captions\.(vtt|srt)")
TRANSCRIPT = re.compile(r"/v1/channels/([^/]+)/transcript")
CHANNEL = re.compile(r"/v1/channels/([^/]+)")
FORMATS = {
    "json": "application/json", "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8",
}


def channel_state(live: bool, last_active: float | None) -> str:
    """What `GET /v1/channels` says of a channel: `live` (a speaker now, here or on another
    node), `ended` (one spoke, none speaks now), or `new` (outputs set up for it, nobody
    has spoken yet). Viewers waiting on a name never make it a channel."""
    return "live" if live else "ended" if last_active is not None else "new"


def live_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Live channels first, each part by name (pages are ranges of names: `after`)."""
    return sorted(entries, key=lambda e: (e["state"] != "live", e["channel"]))


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))


def _name(pattern: re.Pattern[str], request: Request) -> str:
    match = pattern.fullmatch(urlsplit(request.path).path)
    assert match is not None, f"routed by {pattern.pattern}"
    return parse_channel_name(match.group(1))


def _seconds(query: dict[str, str], key: str) -> float | None:
    if key not in query:
        return None
    try:
        value = float(query[key])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{key} must be seconds on the channel's timeline, 0 or more")
    return value


async def _finals(ctx: ServerContext, archive: Archive, name: str, start: float | None = None,
                  end: float | None = None) -> list[Final] | None:
    """The channel's finals, stored and (not committed yet) in memory; None if unknown."""
    stored: list[StoredFinal] = await archive.finals(name, start=start, end=end)
    finals = [as_event(f) for f in stored]
    channel = ctx.channels.get(name)
    if channel is not None:
        last = finals[-1].seq if finals else 0
        finals += [e for e in channel.log.replay(last) if isinstance(e, Final)
                   and (start is None or e.end > start) and (end is None or e.start < end)]
    unknown = channel is None or not channel.started  # only viewers wait on that name
    if not finals and unknown and await archive.channel(name) is None:
        return None
    return finals


def _store_down(error: StoreError) -> HttpResponse:
    return error_response(503, "overloaded", f"the transcript store is unavailable: "
                                             f"{error.message}")


async def caption_file(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels/NAME/captions.vtt (or .srt): the whole channel, from the store
    (from memory without one)."""
    if ctx.archive is None:
        return _memory_caption_file(ctx, request)
    match = CAPTION_FILE.fullmatch(urlsplit(request.path).path)
    assert match is not None, "routed by CAPTION_FILE"
    return await _render(ctx, ctx.archive, parse_channel_name(match.group(1)), match.group(2))


def _memory_caption_file(ctx: ServerContext, request: Request) -> HttpResponse:
    """Without a store: the channel's finals that memory holds."""
    match = CAPTION_FILE.fullmatch(urlsplit(request.path).path)
    assert match is not None, "routed by CAPTION_FILE"
    name, kind = match.group(1), match.group(2)
    try:
        parse_channel_name(name)
    except BadRequest as error:
        return error_response(400, error.code, error.message)
    channel = ctx.channels.get(name)
    if channel is None or not channel.started:
        return error_response(404, "not_found",
                              f"no channel {name!r} on this server")
    cues, speakers = list(channel.log.cues), channel.log.speakers
    if kind == "vtt":
        return body_response(200, render_vtt(cues, speakers).encode(),
                             "text/vtt; charset=utf-8")
    return body_response(200, render_srt(cues, speakers=speakers).encode(),
                         "application/x-subrip; charset=utf-8")


async def transcript(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels/NAME/transcript?format=json|txt|srt|vtt[&from=S&to=S]."""
    name = _name(TRANSCRIPT, request)
    query = _query(request)
    unknown = sorted(set(query) - {"format", "from", "to", "token"})
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    kind = query.get("format", "json")
    kind = "txt" if kind == "text" else kind  # as /v1/transcribe and OpenAI's name it
    if kind not in FORMATS:
        raise BadRequest("format must be one of json, txt (or text), srt, vtt")
    start, end = _seconds(query, "from"), _seconds(query, "to")
    if ctx.archive is None:
        return error_response(404, "not_found", "this server keeps no transcripts "
                                                "(started with --no-store)")
    return await _render(ctx, ctx.archive, name, kind, start, end)


async def _render(ctx: ServerContext, archive: Archive, name: str, kind: str,
                  start: float | None = None, end: float | None = None) -> HttpResponse:
    try:
        finals = await _finals(ctx, archive, name, start, end)
        speakers = await _speakers(ctx, archive, name) if finals else None
    except StoreError as error:
        return _store_down(error)
    if finals is None:
        return error_response(404, "not_found", f"no channel {name!r}")
    body = await asyncio.to_thread(_text, name, kind, finals, speakers)
    return body_response(200, body, FORMATS[kind])


async def _speakers(ctx: ServerContext, archive: Archive, name: str) -> Speakers | None:
    """The channel's newest speaker table: memory's (it is sent before it is stored),
    else the store's."""
    channel = ctx.channels.get(name)
    if channel is not None and channel.log.speakers is not None:
        return channel.log.speakers
    return await archive.speakers(name)


def _text(name: str, kind: str, finals: list[Final], speakers: Speakers | None) -> bytes:
    if kind == "srt":
        return to_srt(finals, speakers).encode()
    if kind == "vtt":
        return to_vtt(finals, speakers).encode()
    if kind == "txt":
        return render_txt(finals, speakers).encode()
    body: dict[str, object] = {"channel": name, "finals": [f.to_dict() for f in finals]}
    labels = {f.speaker for f in finals if f.speaker is not None}
    if labels or speakers is not None:
        # Who is who as of now (names and merges learned after the finals), and the
        # transcript read by speaker; without diarization the answer is as it always was.
        table = {e.id: e.to_dict() for e in (speakers.speakers if speakers else ())}
        table.update({label: {"id": label} for label in sorted(labels - set(table))})
        body["speakers"] = list(table.values())
        body["paragraphs"] = by_speaker(finals, speakers)
    return (json.dumps(body, ensure_ascii=False) + "\n").encode()


async def channel_list(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels[?limit=N&after=NAME]: stored channels, live or not, a page of names;
    in the page, live ones first."""
    if ctx.archive is None:
        return _memory_channel_list(ctx)
    query = _query(request)
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
    after = query.get("after") or None
    try:
        page = await ctx.archive.channels(limit, after)
    except StoreError as error:
        return _store_down(error)
    stored = {info.name: info for info in page.channels}
    # Channels live here that have stored nothing yet, within this page's range of names.
    # ... and channels with outputs before their first speaker, likewise.
    names = set(stored) | {name for name in [*(c.name for c in ctx.channels.channels()
                                               if c.started),
                                             *ctx.outputs.names()]
                           if (after is None or name > after)
                           and (page.next_after is None or name <= page.next_after)}
    body: dict[str, object] = {
        "channels": live_first([_entry(ctx, n, stored.get(n)) for n in names])}
    if page.next_after is not None:
        body["next_after"] = page.next_after
    return json_response(200, body)


def _memory_channel_list(ctx: ServerContext) -> HttpResponse:
    """Without a store: every channel a speaker has published to on this node (or that has
    outputs), live first. Viewers waiting on a name never make it a channel."""
    started = [c for c in ctx.channels.channels() if c.started]
    channels = [
        {"channel": c.name, "live": c.speaker is not None,
         "live_elsewhere": c.log.remote_live,  # its speaker is on another node
         "state": channel_state(c.speaker is not None or c.log.remote_live, c.last_active),
         "last_active": c.last_active, "viewers": len(c.viewers),
         "utterances": c.log.utterances, "seq": c.log.last_seq,
         "outputs": ctx.outputs.statuses(c.name), "quality": c.quality.to_dict()}
        for c in started
    ]
    # A channel may have outputs before its speaker first comes (or after it was forgotten).
    known = {c.name for c in started}
    channels += [{"channel": name, "live": False, "live_elsewhere": False, "state": "new",
                  "last_active": None, "viewers": 0, "utterances": 0, "seq": 0,
                  "outputs": ctx.outputs.statuses(name)}
                 for name in ctx.outputs.names() if name not in known]
    return json_response(200, {"channels": live_first(channels)})


def _entry(ctx: ServerContext, name: str, info: ChannelInfo | None) -> dict[str, Any]:
    channel = ctx.channels.get(name)
    seq = channel.log.last_seq if channel is not None else 0
    live = channel is not None and channel.speaker is not None
    live_elsewhere = channel is not None and channel.log.remote_live
    times = [channel.last_active if channel is not None else None,
             info.last_live if info is not None else None]
    last_active = max((t for t in times if t is not None), default=None)
    entry: dict[str, Any] = {
        "channel": name,
        "live": live,
        "live_elsewhere": live_elsewhere,
        "state": channel_state(live or live_elsewhere, last_active),
        "last_active": last_active,
        "viewers": len(channel.viewers) if channel is not None else 0,
        "utterances": channel.log.utterances if channel is not None else 0,
        "seq": max(seq, info.last_seq if info is not None else 0),
        "outputs": ctx.outputs.statuses(name),
        # how its captions read since this server started (core/quality.py)
        "quality": channel.quality.to_dict() if channel is not None else None,
    }
    if info is not None:
        entry.update(created=info.created, duration=round(info.duration, 3),
                     finals=info.finals, words=info.words, sessions=len(info.sessions))
    return entry


async def delete_channel(ctx: ServerContext, request: HttpRequest) -> HttpResponse | None:
    """DELETE /v1/channels/NAME: its transcript is gone (not while someone speaks on it)."""
    match = CHANNEL.fullmatch(request.path)
    if match is None:
        return None
    name = parse_channel_name(match.group(1))
    if ctx.archive is None:
        return error_response(404, "not_found", "this server keeps no transcripts "
                                                "(started with --no-store)")
    channel = ctx.channels.get(name)
    if channel is not None and (channel.speaker is not None or channel.log.remote_live):
        return error_response(409, "bad_request", f"channel {name!r} is live; delete it "
                                                  "once its speaker has stopped")
    try:
        deleted = await ctx.archive.delete(name)
    except StoreError as error:
        return _store_down(error)
    forgotten = ctx.channels.forget(name)
    if not deleted and not forgotten:
        return error_response(404, "not_found", f"no channel {name!r}")
    return json_response(200, {"deleted": name})
