"""HTTP GET pages for channels: the overlay page, the channel list, live caption files."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import Request

from captioncast.core.params import parse_channel_name, parse_viewer_params
from captioncast.errors import BadRequest
from captioncast.protocol.captions import render_srt, render_vtt
from captioncast.transport.responses import (
    HttpResponse,
    body_response,
    error_response,
    json_response,
)
from captioncast.transport.server_context import ServerContext

CAPTION_FILE = re.compile(r"/v1/channels/([^/]+)/captions\.(vtt|srt)")
OVERLAY_OPTIONS = frozenset({"channel", "since", "token", "size", "lines", "chars", "position",
                             "color", "partial_color", "background", "font", "partials", "align",
                             "hide_after"})


@cache
def _overlay_html() -> bytes:
    return resources.files("captioncast").joinpath("web/overlay.html").read_bytes()


def overlay(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /overlay: the OBS page, once its options are checked."""
    query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
    unknown = sorted(set(query) - OVERLAY_OPTIONS)
    try:
        if unknown:
            raise BadRequest(f"unknown overlay option(s): {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(OVERLAY_OPTIONS))}")
        parse_viewer_params({k: v for k, v in query.items() if k in ("channel", "since")},
                            route="/overlay")
    except BadRequest as error:
        return error_response(400, error.code, error.message)
    # The page reads its options from its own URL; the server only checks them.
    return body_response(200, _overlay_html(), "text/html; charset=utf-8",
                         [("Content-Security-Policy", "default-src 'self'; "
                           "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
                           "connect-src 'self' ws: wss:"),
                          # its URL may hold a token: never send it on as a Referer
                          ("Referrer-Policy", "no-referrer")])


def caption_file(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels/NAME/captions.vtt (or .srt): the channel's finals so far."""
    match = CAPTION_FILE.fullmatch(urlsplit(request.path).path)
    assert match is not None, "routed by CAPTION_FILE"
    name, kind = match.group(1), match.group(2)
    try:
        parse_channel_name(name)
    except BadRequest as error:
        return error_response(400, error.code, error.message)
    channel = ctx.channels.get(name)
    if channel is None:
        return error_response(404, "not_found",
                              f"no channel {name!r} on this server")
    cues = list(channel.log.cues)
    if kind == "vtt":
        return body_response(200, render_vtt(cues).encode(),
                             "text/vtt; charset=utf-8")
    return body_response(200, render_srt(cues).encode(),
                         "application/x-subrip; charset=utf-8")


def channel_list(ctx: ServerContext, request: Request) -> HttpResponse:
    """GET /v1/channels: every channel this node knows."""
    channels = [
        {"channel": c.name, "live": c.speaker is not None,
         "live_elsewhere": c.log.remote_live,  # its speaker is on another node
         "viewers": len(c.viewers),
         "utterances": c.log.utterances, "seq": c.log.last_seq,
         "outputs": ctx.outputs.statuses(c.name)}
        for c in ctx.channels.channels()
    ]
    # A channel may have outputs before its speaker first comes (or after it was forgotten).
    known = {c.name for c in ctx.channels.channels()}
    channels += [{"channel": name, "live": False, "live_elsewhere": False, "viewers": 0,
                  "utterances": 0, "seq": 0, "outputs": ctx.outputs.statuses(name)}
                 for name in ctx.outputs.names() if name not in known]
    return json_response(200, {"channels": channels})
