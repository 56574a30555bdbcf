"""outputs/spec.py: URLs with their signed query kept, and redacted for status."""

from __future__ import annotations

from captioncast.outputs.spec import redact, with_query


def test_query_parameters_are_appended_without_touching_the_signed_ones() -> None:
    url = "https://wmcapi.zoom.us/closedcaption?id=200&ns=GZHkEA==&signature=nY%2Ft&seq=3"
    assert with_query(url, seq=7, lang="en-US") == (
        "https://wmcapi.zoom.us/closedcaption?id=200&ns=GZHkEA==&signature=nY%2Ft"
        "&seq=7&lang=en-US")
    assert redact(url) == "https://wmcapi.zoom.us/closedcaption"
    assert redact("ws://user:pw@host:4455/x?y=1") == "ws://host:4455/x"
