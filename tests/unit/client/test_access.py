"""captioncast_client/access.py: addresses, tokens and TLS as the clients use them."""

from __future__ import annotations

import pytest

from captioncast_client.access import Access, explain_refusal, websocket_base
from captioncast_client.streaming import stream_url
from captioncast_client.transcription import http_base
from captioncast_client.viewing import captions_url


@pytest.mark.parametrize(("server", "base"), [
    ("127.0.0.1:8765", "ws://127.0.0.1:8765"),
    ("ws://h:1/", "ws://h:1"),
    ("wss://captions.example", "wss://captions.example"),
    ("http://h:1", "ws://h:1"),
    ("https://captions.example/", "wss://captions.example"),
])
def test_every_address_form_becomes_a_websocket_base(server: str, base: str) -> None:
    assert websocket_base(server) == base
    assert stream_url(server).startswith(base + "/v1/stream")
    assert captions_url(server, "show").startswith(base + "/v1/captions?channel=show")


def test_https_and_wss_addresses_post_over_https() -> None:
    assert http_base("wss://captions.example") == ("https", "captions.example", 443)
    assert http_base("https://h:8443") == ("https", "h", 8443)


def test_the_token_goes_in_a_header_and_tls_only_for_secure_urls() -> None:
    access = Access(token="t0k")
    assert access.headers() == {"Authorization": "Bearer t0k"}
    assert Access().headers() == {}
    assert access.ssl_for("ws://h/v1/stream") is None
    assert access.ssl_for("wss://h/v1/stream") is not None


def test_refusals_say_what_to_do() -> None:
    assert "--token" in explain_refusal(401)
    assert "origin" in explain_refusal(403)
    assert explain_refusal(500) == "HTTP 500"
