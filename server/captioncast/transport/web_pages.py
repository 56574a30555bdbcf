"""The captioning page `/`, the reader page `/watch` and their files under `/static/`.

Plain files from `captioncast/web`, no build step. They pass the server's origin check
but need no token: they hold no data, and every request they make carries the token the
user gives them. Their URLs are relative, so they work behind a proxy's path prefix too.
"""

from __future__ import annotations

import hashlib
import http
import re
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from captioncast.transport.responses import error_response

PAGES = {"/": "index.html", "/watch": "watch.html"}
STATIC = re.compile(r"/static/([a-z][a-z0-9-]*\.(js|css))")
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
                 "css": "text/css; charset=utf-8"}
# Scripts and styles only from this server, none inline; sockets to it (ws: wss: for
# browsers whose 'self' does not cover them yet); the AudioWorklet is a script too.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self' ws: wss:; media-src 'self' blob:; object-src 'none'; "
               "base-uri 'none'; frame-ancestors 'none'")


@cache
def _file(name: str) -> tuple[bytes, str] | None:
    """The file's bytes and its ETag; None when the package holds no such file."""
    entry = resources.files("captioncast").joinpath("web", *name.split("/"))
    if not entry.is_file():
        return None
    body = entry.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _serve(request: Request, name: str) -> Response:
    found = _file(name)
    if found is None:
        return error_response(http.HTTPStatus.NOT_FOUND, "not_found", f"no file {name}")
    body, etag = found
    headers = Headers([
        ("Content-Type", CONTENT_TYPES[name.rsplit(".", 1)[1]]),
        # Revalidate every time (a cheap 304): an upgraded server's pages are never stale,
        # and nothing a token opened stays in a shared cache.
        ("Cache-Control", "private, no-cache"), ("ETag", etag),
        ("X-Content-Type-Options", "nosniff"),
        # a page's URL may hold a token: never send it on as a Referer
        ("Referrer-Policy", "no-referrer"),
    ])
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = PAGE_POLICY
        # the microphone and tab capture for this origin only
        headers["Permissions-Policy"] = "microphone=(self), display-capture=(self)"
    if request.headers.get("If-None-Match") == etag:
        return Response(http.HTTPStatus.NOT_MODIFIED.value, "Not Modified", headers, b"")
    headers["Content-Length"] = str(len(body))
    return Response(http.HTTPStatus.OK.value, "OK", headers, body)


def route_web_pages(request: Request) -> Response | None:
    path = urlsplit(request.path).path
    if path in PAGES:
        return _serve(request, PAGES[path])
    match = STATIC.fullmatch(path)
    if match:
        return _serve(request, f"static/{match.group(1)}")
    return None
