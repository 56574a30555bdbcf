"""The pages: `/` (captioning), `/watch` (reader), `/overlay` (OBS) and files under `/static/`.

Plain files from `captioncast/web`, no build step. They pass the server's origin check
but need no token: they hold no data, and every request they make carries the token the
user gives them. Their URLs are relative, so they work behind a proxy's path prefix too.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import Request

from captioncast.core.params import parse_viewer_params
from captioncast.errors import BadRequest
from captioncast.transport.responses import HttpResponse, body_response, error_response

if TYPE_CHECKING:
    from captioncast.transport.server_context import ServerContext

PAGES = {"/": "index.html", "/watch": "watch.html"}
STATIC = re.compile(r"/static/([a-z][a-z0-9-]*\.(js|css|svg))")
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                 "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}  # the favicon
# Scripts and styles from this server only, none inline (the AudioWorklet is a script
# too); sockets to it (ws: wss: for browsers whose 'self' does not cover them yet).
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self' ws: wss:; media-src 'self' blob:; object-src 'none'; "
               "base-uri 'none'; frame-ancestors 'none'")
# Every response is Cache-Control: no-store (transport/responses.py): a server upgrade's
# pages are never stale, and a page opened with ?token= stays in no cache.
HEADERS = [("X-Content-Type-Options", "nosniff"),
           ("Referrer-Policy", "no-referrer")]  # a page's URL may hold a token
PAGE_HEADERS = [("Content-Security-Policy", PAGE_POLICY),
                ("Permissions-Policy", "microphone=(self), display-capture=(self)")]


@cache
def _file(name: str) -> bytes | None:
    entry = resources.files("captioncast").joinpath("web", *name.split("/"))
    return entry.read_bytes() if entry.is_file() else None


def _serve(name: str) -> HttpResponse:
    body = _file(name)
    if body is None:
        return error_response(404, "not_found", f"no file {name} on this server")
    kind = name.rsplit(".", 1)[1]
    return body_response(200, body, CONTENT_TYPES[kind],
                         HEADERS + (PAGE_HEADERS if kind == "html" else []))


def web_page(request: Request) -> HttpResponse | None:
    """The page or file for a GET of `/`, `/watch` or `/static/NAME`; None for any other path."""
    path = urlsplit(request.path).path
    if path in PAGES:
        return _serve(PAGES[path])
    match = STATIC.fullmatch(path)
    return _serve(f"static/{match.group(1)}") if match else None


OVERLAY_OPTIONS = frozenset({"channel", "since", "token", "size", "lines", "chars", "position",
                             "color", "partial_color", "background", "font", "partials", "align",
                             "hide_after", "speakers"})
SPEAKER_MARKS = ("arrows", "names", "off")  # the overlay's `speakers`: at a change of speaker


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
        if query.get("speakers", "arrows") not in SPEAKER_MARKS:
            raise BadRequest(f"speakers must be one of {', '.join(SPEAKER_MARKS)}")
    except BadRequest as error:
        return error_response(400, error.code, error.message)
    # The page reads its options from its own URL; the server only checks them.
    return body_response(200, _overlay_html(), "text/html; charset=utf-8",
                         [("Content-Security-Policy", "default-src 'self'; "
                           "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
                           "connect-src 'self' ws: wss:"),
                          # its URL may hold a token: never send it on as a Referer
                          ("Referrer-Policy", "no-referrer")])
