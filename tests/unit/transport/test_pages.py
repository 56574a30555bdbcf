"""transport/pages.py: which paths are pages and files, with what type and headers."""

from __future__ import annotations

from websockets.datastructures import Headers
from websockets.http11 import Request

from captioncast.transport.pages import web_page
from captioncast.transport.responses import HttpResponse


def _get(path: str) -> HttpResponse | None:
    return web_page(Request(path, Headers()))


def test_the_pages_are_html_with_a_policy_that_allows_no_inline_script() -> None:
    for path in ("/", "/?channel=x&token=t", "/watch", "/watch?channel=x"):
        page = _get(path)
        assert page is not None and page.status == 200, path
        assert page.content_type == "text/html; charset=utf-8"
        headers = dict(page.headers)
        assert "script-src 'self';" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"


def test_static_files_have_their_types_and_nothing_else_is_served() -> None:
    script = _get("/static/capture-worklet.js")
    assert script is not None and script.content_type == "text/javascript; charset=utf-8"
    style = _get("/static/style.css")
    assert style is not None and style.content_type == "text/css; charset=utf-8"
    for path in ("/static/nope.js", "/static/../overlay.html", "/static/index.html",
                 "/static/Capture.js"):
        answer = _get(path)
        assert answer is None or answer.status == 404, path
    assert _get("/overlay") is None and _get("/watch/") is None


def test_the_favicon_is_served_and_every_page_links_it() -> None:
    icon = _get("/static/favicon.svg")
    assert icon is not None and icon.status == 200 and icon.content_type == "image/svg+xml"
    assert isinstance(icon.body, bytes) and icon.body.startswith(b"<svg")
    from importlib import resources

    web = resources.files("captioncast") / "web"
    for page in ("index.html", "watch.html", "overlay.html"):
        assert b'<link rel="icon" href="static/favicon.svg"' in (web / page).read_bytes(), page
