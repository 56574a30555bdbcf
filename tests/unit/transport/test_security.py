"""transport/security.py: tokens, origins, connection counts, redaction; no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioncast.errors import CaptioncastError, Overloaded, Unauthorized
from captioncast.transport.security import (
    Forbidden,
    Gatekeeper,
    SecurityOptions,
    answered_protocol,
    http_refusal,
    presented_token,
    redact,
    ssl_context,
    tokens_from,
)

TOKEN = "tok-1"


def gate(**options: object) -> Gatekeeper:
    return Gatekeeper(SecurityOptions(**options))  # type: ignore[arg-type]


def test_without_tokens_everything_is_open() -> None:
    gate().authorize("/v1/stream", {})
    gate().authorize("/v1/channels?token=whatever", {})


@pytest.mark.parametrize(("target", "headers"), [
    ("/v1/stream", {"Authorization": f"Bearer {TOKEN}"}),
    ("/v1/stream", {"Authorization": f"bearer   {TOKEN} "}),
    (f"/v1/stream?channel=a&token={TOKEN}", {}),
    ("/v1/captions?token=tok-2&channel=a", {}),
    ("/healthz", {}),  # open to probes
])
def test_a_valid_token_in_a_header_or_the_query_passes(target: str,
                                                       headers: dict[str, str]) -> None:
    gate(tokens=(TOKEN, "tok-2")).authorize(target, headers)


@pytest.mark.parametrize(("target", "headers", "message"), [
    ("/v1/stream", {}, "needs a token"),
    ("/v1/stream?token=", {}, "not valid"),
    ("/v1/stream?token=tok-11", {}, "not valid"),
    ("/v1/stream?token=tok", {}, "not valid"),
    ("/overlay?channel=a", {"Authorization": "Basic dG9rLTE="}, "needs a token"),
    ("/v1/stream", {"Authorization": "Bearer wrong"}, "not valid"),
    ("/v1/stream", {"Authorization": "Bearer ünïcode"}, "not valid"),
    ("/healthz/../v1/stream", {}, "needs a token"),
])
def test_a_missing_or_wrong_token_is_unauthorized(target: str, headers: dict[str, str],
                                                  message: str) -> None:
    with pytest.raises(Unauthorized, match=message) as caught:
        gate(tokens=(TOKEN,)).authorize(target, headers)
    assert caught.value.close_code == 4001
    assert TOKEN not in caught.value.message


def test_the_header_wins_over_the_query() -> None:
    assert presented_token("/x?token=b", {"Authorization": "Bearer a"}) == "a"
    assert presented_token("/x?token=b", {}) == "b"
    assert presented_token("/x", {"Authorization": "Bearer "}) is None


def test_a_browser_key_comes_as_deepgrams_or_openais_subprotocol() -> None:
    deepgram = {"Sec-WebSocket-Protocol": "token, dg-key"}
    openai = {"Sec-WebSocket-Protocol":
              "realtime, openai-insecure-api-key.oa-key, openai-beta.realtime-v1"}
    assert presented_token("/v1/listen", deepgram) == "dg-key"
    assert presented_token("/v1/realtime", openai) == "oa-key"
    assert presented_token("/v1/listen?token=q", {**deepgram, "Authorization": "Token h"}) == "h"
    assert presented_token("/x?token=q", {"Sec-WebSocket-Protocol": "token"}) == "q"
    assert presented_token("/x", {"Sec-WebSocket-Protocol": "openai-insecure-api-key."}) is None
    # the server names one it speaks back, or the browser drops the connection
    assert answered_protocol(["token", "dg-key"]) == "token"
    assert answered_protocol(["realtime", "openai-insecure-api-key.k"]) == "realtime"
    assert answered_protocol(["chat"]) is None


def test_tokens_are_redacted_from_logged_targets() -> None:
    assert redact("/v1/stream?token=abc&channel=x") == "/v1/stream?token=REDACTED&channel=x"
    assert redact("/overlay?channel=x&TOKEN=abc#top") == "/overlay?channel=x&TOKEN=REDACTED#top"
    assert redact("/v1/stream?mytoken=abc") == "/v1/stream?mytoken=abc"


def test_origins_listed_same_origin_or_none_pass() -> None:
    g = gate(allowed_origins=("https://studio.example/",))
    g.check_origin({})  # not a browser
    g.check_origin({"Origin": "https://Studio.example"})
    g.check_origin({"Origin": "http://captions.local:8765", "Host": "captions.local:8765"})
    with pytest.raises(Forbidden):
        g.check_origin({"Origin": "https://evil.example", "Host": "captions.local:8765"})
    with pytest.raises(Forbidden):
        g.check_origin({"Origin": "null"})
    gate().check_origin({"Origin": "https://anything.example"})  # no list: any origin


def test_connections_are_counted_per_address_and_released() -> None:
    g = gate(max_connections_per_ip=2)
    with g.connection("10.0.0.1"), g.connection("10.0.0.1"):
        with pytest.raises(Overloaded, match="per address") as caught, \
                g.connection("10.0.0.1"):
            pass
        assert caught.value.close_code == 1013
        with g.connection("10.0.0.2"):  # another address has its own count
            pass
        assert g.connections_from("10.0.0.1") == 2
    assert g.connections_from("10.0.0.1") == 0
    with gate(max_connections_per_ip=0).connection("10.0.0.1"):  # 0: no limit
        pass


def test_each_refusal_has_its_http_status() -> None:
    assert http_refusal(Unauthorized("x")) == (401, [("WWW-Authenticate",
                                                      'Bearer realm="captioncast"')])
    assert http_refusal(Forbidden("x")) == (403, [])
    g = gate(max_connections_per_ip=1)
    with g.connection("a"), pytest.raises(Overloaded) as caught, g.connection("a"):
        pass
    assert http_refusal(caught.value) == (429, [("Retry-After", "5")])
    assert http_refusal(Overloaded("busy")) is None  # the plain one stays 503


def test_tokens_come_from_flags_files_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# comment\n\n  from-file \nshared\n")
    assert tokens_from(["flag", "shared"], [file], "env-1, env-2,") == (
        "flag", "shared", "from-file", "env-1", "env-2")
    with pytest.raises(CaptioncastError, match="token file"):
        tokens_from([], [tmp_path / "missing"], None)


def test_tls_needs_a_loadable_certificate(tmp_path: Path) -> None:
    assert ssl_context(SecurityOptions()) is None
    junk = tmp_path / "cert.pem"
    junk.write_text("not a certificate")
    with pytest.raises(CaptioncastError, match="certificate"):
        ssl_context(SecurityOptions(certfile=junk))


def test_the_drain_leaves_time_for_what_follows_it() -> None:
    from captioncast.transport.shutdown import ShutdownOptions

    options = ShutdownOptions(timeout_s=10.0, close_timeout_s=3.0)
    assert options.drain_s() == 6.0  # 3 s of closing handshakes and 1 s of slack
    assert options.drain_s(after_s=3.0) == 6.0  # never under 60% of the timeout
    assert ShutdownOptions(timeout_s=30.0).drain_s(after_s=3.0) == 23.0
    assert ShutdownOptions(timeout_s=0.0).drain_s() == 0.0


def test_a_second_signal_hurries_the_shutdown() -> None:
    import asyncio

    from captioncast.transport.shutdown import signal_stop

    stop, hurry = asyncio.Event(), asyncio.Event()
    signal_stop(stop, hurry)
    assert stop.is_set() and not hurry.is_set()
    signal_stop(stop, hurry)
    assert hurry.is_set()


def test_trusted_means_a_valid_token_whatever_the_path() -> None:
    g = gate(tokens=(TOKEN,))
    assert not g.trusted("/healthz", {})
    assert g.trusted(f"/healthz?token={TOKEN}", {})
    assert gate().trusted("/healthz", {})  # no tokens configured: everyone is
