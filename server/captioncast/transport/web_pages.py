"""The captioning page `/`, the reader page `/watch` and their files under `/static/`.

Plain files from `captioncast/web`, no build step. They pass the server's origin check
but need no token: they hold no data, and every request they make carries the token the
user gives them. Their URLs are relative, so they work behind a proxy's path prefix too.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

from websockets.http11 import Request

from captioncast.transport.responses import HttpResponse, body_response, error_response

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
