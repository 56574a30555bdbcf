"""outputs/http.py: what the HTTP kinds share (Retry-After)."""

from __future__ import annotations

import time


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    import email.utils

    import httpx

    from captioncast.outputs.http import retry_after

    assert retry_after(httpx.Response(503, headers={"Retry-After": "7"})) == 7.0
    assert retry_after(httpx.Response(503)) is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    wait = retry_after(httpx.Response(429, headers={"Retry-After": later}))
    assert wait is not None and 55 <= wait <= 61
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
