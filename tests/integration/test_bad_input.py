"""Bad input of every kind at one real server: each gets a clear answer, and the server lives.

The hypothesis test throws a catalogue of malformed inputs (query strings, text and binary
frames, broken WebSocket framing, raw HTTP) at the shared server, checks what every one of
them gets back, then checks that a normal stream of real speech still gets every final.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import StreamResult, stream, stream_url
from tests.conftest import reference, speech_path, wer
from tests.integration import rawws
from tests.integration.conftest import RunningServer
from tests.integration.test_streaming import check_protocol

pytestmark = pytest.mark.model

PROTOCOL_CODES = {"bad_request", "bad_audio", "unauthorized", "overloaded", "too_large",
                  "timeout", "internal"}
FATAL_CLOSE = {"bad_request": 1008, "too_large": 1009, "timeout": 1008, "overloaded": 1013}
MAX_FRAME = 64 * 1024
READ_TIMEOUT_S = 60.0  # a deadline for an answer that never comes, not a wait: answers come at once
EXAMPLES_PER_KIND = 10
RUNS: dict[str, int] = {}  # examples tried, per kind


def _speech(name: str) -> list[bytes]:
    return [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]


# -- talking to the server on bare sockets ---------------------------------------------


@dataclass
class Session:
    status: int
    events: list[dict[str, Any]]
    close_code: int | None  # None: the connection ended without a close frame


def ws_session(port: int, path: str, frames: list[bytes], eos: bool = True,
               half_close: bool = False) -> Session:
    """Upgrade, send `frames` (then eos, or EOF with `half_close`), read until the server
    closes."""
    sock, head = rawws.open_raw(port, path, timeout=READ_TIMEOUT_S)
    status = int(head.split(b" ", 2)[1]) if head else 0
    events: list[dict[str, Any]] = []
    code: int | None = None
    if status != 101:
        sock.close()
        return Session(status, events, None)
    try:
        for frame in [*frames, *([rawws.text('{"type":"eos"}')] if eos else [])]:
            try:
                sock.sendall(frame)
            except OSError:
                break  # the server already closed: a fatal error, read it below
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while True:
            opcode, payload = rawws.read_frame(sock)
            if opcode == 0x1:
                events.append(json.loads(payload))
            elif opcode == 0x8:
                code = rawws.close_code(payload)
                sock.sendall(rawws.frame(0x8, payload[:2]))
                break
    except (ConnectionError, OSError):
        pass
    finally:
        sock.close()
    return Session(status, events, code)


def raw_http(port: int, data: bytes, wait_s: float = 30.0) -> bytes:
    """Send bytes, return what comes back before the server closes (or `wait_s` passes:
    a deadline; a complete answer ends the read at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        try:
            sock.sendall(data)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except (TimeoutError, ConnectionError):
            pass
    return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def http_status(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), response[:200]
    return int(line.split(b" ", 2)[1])


# -- what each kind of input must get --------------------------------------------------


def check_events(session: Session) -> None:
    """Whatever was sent: contiguous seq, protocol codes, and `end` or a fatal close."""
    events = session.events
    assert events, session
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    for event in events:
        if event["type"] == "error":
            assert event["code"] in PROTOCOL_CODES and event["message"], event
    assert session.close_code != 1011, events  # never an internal error


def expect_refused(session: Session, code: str = "bad_request") -> None:
    check_events(session)
    first = session.events[0]
    assert first["type"] == "error" and first["code"] == code, session.events
    assert session.close_code == FATAL_CLOSE[code]


def expect_survives(session: Session, errors: set[str] | None = None) -> None:
    """Non-fatal: the session goes on to `end` and 1000; the errors are among `errors`."""
    check_events(session)
    assert session.events[0]["type"] == "ready"
    assert session.events[-1]["type"] == "end", session.events[-3:]
    assert session.close_code == 1000
    got = {e["code"] for e in session.events if e["type"] == "error"}
    assert got <= (errors or set()), got


def expect_ready_or_refused(session: Session) -> None:
    check_events(session)
    first = session.events[0]
    if first["type"] == "error":
        expect_refused(session)
    else:
        assert first["type"] == "ready" and session.events[-1]["type"] == "end"


def expect_protocol_close(session: Session, codes: set[int]) -> None:
    """Broken framing: websockets fails the connection with a protocol close code."""
    assert session.status == 101
    assert session.close_code in codes | {None}, session  # None: cut without a close frame
    for event in session.events:
        assert event["type"] in ("ready", "error", "partial", "final", "end")


def expect_http(response: bytes, statuses: set[int]) -> None:
    assert response, "no answer"
    assert http_status(response) in statuses, response[:300]


# -- the catalogue ---------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[int, Any], None]


def _query(param: str, values: st.SearchStrategy[str],
           path: str = "/v1/stream") -> Kind:
    def run(port: int, value: str) -> None:
        expect_ready_or_refused(ws_session(port, f"{path}?{param}={quote(value)}", []))
    return Kind(f"query {param}", values, run)


def _refused_query(name: str, queries: st.SearchStrategy[str],
                   path: str = "/v1/stream") -> Kind:
    def run(port: int, query: str) -> None:
        expect_refused(ws_session(port, f"{path}?{query}", []))
    return Kind(name, queries, run)


def _frames(name: str, frames: st.SearchStrategy[list[bytes]], errors: set[str],
            query: str = "") -> Kind:
    def run(port: int, sent: list[bytes]) -> None:
        expect_survives(ws_session(port, f"/v1/stream{query}", sent), errors)
    return Kind(name, frames, run)


def _texts(name: str, texts: st.SearchStrategy[str], errors: set[str]) -> Kind:
    return _frames(name, texts.map(lambda t: [rawws.text(t)]), errors)


def _broken(name: str, frames: st.SearchStrategy[bytes], codes: set[int]) -> Kind:
    def run(port: int, frame: bytes) -> None:
        expect_protocol_close(ws_session(port, "/v1/stream", [frame], eos=False), codes)
    return Kind(name, frames, run)


def _http(name: str, requests: st.SearchStrategy[bytes], statuses: set[int]) -> Kind:
    def run(port: int, request: bytes) -> None:
        expect_http(raw_http(port, request), statuses)
    return Kind(name, requests, run)


def _http_or_close(name: str, requests: st.SearchStrategy[bytes]) -> Kind:
    """Garbage: an HTTP 4xx, or the connection closed; never a hang, never a 5xx."""
    def run(port: int, request: bytes) -> None:
        answer = raw_http(port, request, wait_s=3.0)
        if answer:
            assert 400 <= http_status(answer) < 500, answer[:300]
    return Kind(name, requests, run)


text_junk = st.text(min_size=1, max_size=40)
bad_ints = st.one_of(st.integers(max_value=7999), st.integers(min_value=48001)).map(str)
not_ints = st.text(alphabet="abc.-e+", min_size=1, max_size=8)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
odd_bytes = st.integers(0, 400).flatmap(lambda n: st.binary(min_size=2 * n + 1,
                                                              max_size=2 * n + 1))
f32 = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 3.5, 0.0])
CONTROL = 0x8, 0x9, 0xA


def _audio_f32(values: list[float]) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def _request(method: str, path: str, headers: str = "", body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").encode() + body


KINDS: list[Kind] = [
    # query strings on /v1/stream and /v1/captions: refused with bad_request and 1008
    _refused_query("sample_rate out of range", bad_ints.map(lambda v: f"sample_rate={v}")),
    _refused_query("sample_rate not a number", not_ints.map(lambda v: f"sample_rate={v}")),
    _query("encoding", text_junk),
    _refused_query("channels out of range",
                   st.integers().filter(lambda n: n not in (1, 2)).map(lambda n: f"channels={n}")),
    _query("language", text_junk),
    _query("task", text_junk),
    _query("channel", text_junk),
    _refused_query("channel too long", st.integers(65, 300).map(lambda n: "channel=" + "c" * n)),
    _query("interim", text_junk),
    _query("words", text_junk),
    _refused_query("prompt too long",
                   st.integers(501, 3000).map(lambda n: "prompt=" + "p" * n)),
    _query("resume", text_junk),
    _query("since", text_junk),
    _refused_query("unknown parameter",
                   words.filter(lambda w: w not in {"channel", "since", "token", "task",
                                                    "words", "prompt", "resume", "interim",
                                                    "language", "encoding", "channels",
                                                    "sample_rate"})
                   .map(lambda w: f"{w}=1")),
    _refused_query("a parameter twice",
                   st.sampled_from(["sample_rate=16000&sample_rate=16000",
                                    "interim=true&interim=false", "language=en&language=en"])),
    _refused_query("bytes that are not UTF-8", st.binary(min_size=1, max_size=12).map(
        lambda b: "language=" + quote(b"\xff" + b))),
    _refused_query("viewer without a channel", st.sampled_from(["", "since=3", "x=1"]),
                   path="/v1/captions"),
    _refused_query("viewer since", not_ints.map(lambda v: f"channel=c&since={v}"),
                   path="/v1/captions"),
    _refused_query("viewer channel", st.text(alphabet=" /?#%<>\"'", min_size=1, max_size=8)
                   .map(lambda v: f"channel={quote(v)}"), path="/v1/captions"),
    # text frames: non-fatal bad_request, and the session goes on
    _texts("not JSON", st.text(min_size=1, max_size=200).filter(lambda t: not _is_json(t)),
           {"bad_request"}),
    _texts("JSON but not an object", st.one_of(
        st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10), st.none(),
        st.booleans()).map(json.dumps), {"bad_request"}),
    _texts("object without type", st.dictionaries(
        words.filter(lambda w: w != "type"), st.integers(), max_size=3).map(json.dumps),
        {"bad_request"}),
    _texts("unknown type", text_junk.filter(lambda t: t not in ("flush", "eos", "keepalive"))
           .map(lambda t: json.dumps({"type": t})), {"bad_request"}),
    _texts("type not a string", st.one_of(st.integers(), st.lists(st.integers(), max_size=2),
                                          st.dictionaries(words, st.integers(), max_size=2))
           .map(lambda t: json.dumps({"type": t})), {"bad_request"}),
    _texts("deeply nested JSON", st.integers(500, 100_000).map(lambda n: "[" * n + "]" * n),
           {"bad_request"}),
    _texts("huge text frame", st.integers(5000, 200_000).map(
        lambda n: json.dumps({"type": "x" * n})), {"bad_request"}),
    _texts("JSON with NaN", st.sampled_from(['{"type":NaN}', '{"type":"eos","x":Infinity}',
                                             "NaN"]), {"bad_request"}),
    _frames("keepalive and flush spam", st.integers(1, 300).map(
        lambda n: [rawws.text('{"type":"keepalive"}'), rawws.text('{"type":"flush"}')] * n),
        set()),
    _frames("eos twice, then more control", st.just(
        [rawws.text('{"type":"eos"}'), rawws.text('{"type":"eos"}'),
         rawws.text('{"type":"flush"}')]), set()),
    # binary frames
    _frames("odd byte counts", st.lists(odd_bytes.map(rawws.binary), min_size=1, max_size=5),
            {"bad_audio"}),
    _frames("f32 frames not whole samples", st.integers(1, 300).filter(lambda n: n % 4)
            .map(lambda n: [rawws.binary(b"\x00" * n)]), {"bad_audio"},
            query="?encoding=pcm_f32le"),
    _frames("stereo frames not whole samples", st.integers(1, 300).filter(lambda n: n % 4)
            .map(lambda n: [rawws.binary(b"\x00" * n)]), {"bad_audio"}, query="?channels=2"),
    _frames("binary garbage", st.lists(st.binary(min_size=2, max_size=4000)
                                       .map(lambda b: rawws.binary(b[: len(b) // 2 * 2])),
                                       min_size=1, max_size=5), set()),
    _frames("NaN and inf in f32", st.lists(f32, min_size=1, max_size=2000)
            .map(lambda v: [rawws.binary(_audio_f32(v))]), set(), query="?encoding=pcm_f32le"),
    _frames("clipping f32", st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=2000)
            .map(lambda v: [rawws.binary(_audio_f32(v))]), set(), query="?encoding=pcm_f32le"),
    _frames("empty binary frames", st.integers(1, 20).map(lambda n: [rawws.binary(b"")] * n),
            set()),
    _frames("a flood of tiny frames", st.integers(100, 3000).map(
        lambda n: [rawws.binary(b"\x01\x00") * n]), set()),
    _frames("audio after eos", st.binary(min_size=2, max_size=200).map(
        lambda b: [rawws.text('{"type":"eos"}'), rawws.binary(b[: len(b) // 2 * 2] or b"\0\0")]),
        {"bad_request"}),
    Kind("frame over the maximum size", st.integers(MAX_FRAME + 2, 4 * MAX_FRAME)
         .map(lambda n: n // 2 * 2),
         lambda port, n: expect_fatal(ws_session(port, "/v1/stream",
                                                 [rawws.binary(b"\0" * n)]), "too_large")),
    # broken WebSocket framing: websockets fails the connection (1002, 1007, 1009)
    _broken("unmasked client frame", st.binary(max_size=100).map(
        lambda b: rawws.frame(0x2, b, mask=False)), {1002}),
    _broken("reserved bits", st.tuples(st.integers(1, 7), st.binary(max_size=50)).map(
        lambda t: rawws.frame(0x2, t[1], rsv=t[0])), {1002}),
    _broken("unknown opcode", st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
            .map(lambda op: rawws.frame(op, b"x")), {1002}),
    _broken("fragmented control frame", st.sampled_from(CONTROL[1:]).map(
        lambda op: rawws.frame(op, b"hi", fin=False)), {1002}),
    _broken("control frame over 125 bytes", st.tuples(
        st.sampled_from(CONTROL), st.integers(126, 1000)).map(
        lambda t: rawws.frame(t[0], b"\x03\xe8" + b"x" * t[1])), {1002}),
    _broken("continuation with nothing to continue", st.binary(max_size=100).map(
        lambda b: rawws.frame(0x0, b)), {1002}),
    _broken("new message inside a fragmented one", st.sampled_from([0x1, 0x2]).map(
        lambda op: rawws.frame(0x2, b"\0\0", fin=False) + rawws.frame(op, b"\0\0")), {1002}),
    _broken("invalid UTF-8 in a text frame", st.sampled_from(
        [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b'{"type":"\xe2\x28\xa1"}']).map(
        lambda b: rawws.frame(0x1, b)), {1007}),
    _broken("close with an invalid code", st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 2000,
                                                           5000, 65535]).map(
        lambda c: rawws.frame(0x8, struct.pack("!H", c))), {1002}),
    _broken("close with a one-byte payload", st.just(rawws.frame(0x8, b"\x03")), {1002}),
    _broken("declared length past the transport limit", st.integers(5 * 2**20, 2**40).map(
        lambda n: bytes([0x82, 0xFF]) + struct.pack("!Q", n) + b"\0\0\0\0"), {1009}),
    Kind("a frame cut short, then EOF", st.integers(10, 1000).map(
        lambda n: rawws.binary(b"\0" * n)[: n // 2]),
        lambda port, frame: expect_protocol_close(
            ws_session(port, "/v1/stream", [frame], eos=False, half_close=True), set())),
    # raw HTTP
    _http_or_close("random first bytes", st.binary(min_size=1, max_size=300)
                   .map(lambda b: b + b"\r\n\r\n")),
    _http_or_close("garbage request line after GET", st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
        .map(lambda t: f"GET {t} HTTP/1.1 x\r\n\r\n".encode())),
    _http("head too large", st.integers(20_000, 80_000).map(
        lambda n: _request("GET", "/healthz", f"X-Big: {'b' * n}\r\n")), {400, 413, 431}),
    _http("POST head too large", st.integers(20_000, 80_000).map(
        lambda n: _request("POST", "/v1/transcribe", f"X-Big: {'b' * n}\r\n")),
        {400, 413, 431}),
    _http("too many headers", st.integers(200, 2000).map(
        lambda n: _request("GET", "/healthz", "".join(f"X-{i}: v\r\n" for i in range(n)))),
        {400, 431}),
    _http("unknown method", st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3,
                                    max_size=10).filter(lambda m: m not in ("GET", "HEAD"))
          .map(lambda m: _request(m, "/healthz", "Content-Length: 0\r\n")), {405}),
    _http("bad Content-Length", st.sampled_from(["-1", "abc", "1e3", "99999999999999999999",
                                                 "1, 2"]).map(
        lambda v: _request("POST", "/v1/transcribe", f"Content-Length: {v}\r\n")), {400, 413}),
    _http("bad chunk sizes", st.sampled_from([b"zz\r\n", b"-5\r\n", b"5\r\nab\r\n"]).map(
        lambda c: _request("POST", "/v1/transcribe", "Transfer-Encoding: chunked\r\n", c)
        + b"\r\n0\r\n\r\n"), {400}),
    _http("an upload that is not audio", st.binary(min_size=1, max_size=5000).map(
        lambda b: _request("POST", "/v1/transcribe", f"Content-Length: {len(b)}\r\n", b)),
        {400, 200}),  # random bytes can pass for a frame of MP3: then 200 and no words
    _http("GET-only routes with other methods", st.sampled_from(
        ["/healthz", "/overlay?channel=x", "/v1/channels", "/v1/stream"]).flatmap(
        lambda p: st.sampled_from(["PUT", "DELETE", "PATCH", "POST"]).map(
            lambda m: _request(m, p, "Content-Length: 0\r\n"))), {405}),
    _http("POST routes with GET", st.sampled_from(["/v1/transcribe",
                                                   "/v1/audio/transcriptions"]).map(
        lambda p: _request("GET", p)), {405}),
    _http("unknown paths", words.map(lambda w: _request("GET", f"/{w}/{w}")), {404}),
    _http("upgrades that are not WebSocket handshakes", st.sampled_from([
        "Upgrade: websocket\r\nConnection: Upgrade\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
        "Sec-WebSocket-Version: 13\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
        "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade\r\n"]).map(
        lambda h: _request("GET", "/v1/stream", h)), {400, 426}),
    _http_or_close("HTTP/2 preface", st.just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
    _http_or_close("a TLS hello on the plain port", st.binary(min_size=5, max_size=200).map(
        lambda b: b"\x16\x03\x01\x00\xc8\x01" + b)),
    _http("caption file names that are not channels", st.sampled_from(
        ["..%2f..%2fetc%2fpasswd", "%00", "a%20b", "x" * 65]).map(
        lambda n: _request("GET", f"/v1/channels/{n}/captions.vtt")), {400, 404}),
    _http("overlay options", words.filter(lambda w: w not in {
        "channel", "since", "token", "size", "lines", "chars", "position", "color",
        "partial_color", "background", "font", "partials", "align", "hide_after"}).map(
        lambda w: _request("GET", f"/overlay?channel=x&{w}=1")), {400}),
]


def expect_fatal(session: Session, code: str) -> None:
    check_events(session)
    assert session.events[0]["type"] == "ready"
    errors = [e for e in session.events if e["type"] == "error"]
    assert errors and errors[-1]["code"] == code, session.events
    assert session.close_code == FATAL_CLOSE[code]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _attack(kind: Kind, port: int) -> Callable[[], None]:
    """A few examples of one kind, hypothesis's simplest first."""
    @settings(max_examples=EXAMPLES_PER_KIND, deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(kind.strategy)
    def attack(value: Any) -> None:
        RUNS[kind.name] = RUNS.get(kind.name, 0) + 1
        kind.run(port, value)

    return attack  # type: ignore[no-any-return]


def test_the_catalogue_has_fifty_kinds() -> None:
    assert len({kind.name for kind in KINDS}) >= 50


def test_every_kind_of_bad_input_gets_an_answer_and_the_server_lives(
        server: RunningServer) -> None:
    started = time.monotonic()
    log_start = server.log.stat().st_size
    for kind in KINDS:
        try:
            _attack(kind, server.port)()
        except Exception as exc:
            raise AssertionError(f"kind {kind.name!r} failed: {exc}") from exc
    fuzzed_s = time.monotonic() - started
    status, body = server.health()
    assert status == 200 and body["status"] == "ok"
    assert server.process.poll() is None
    with server.log.open("rb") as f:
        f.seek(log_start)
        assert b"Traceback" not in f.read()
    # and a normal stream still gets every final
    import asyncio

    name = "libri_test_61-70968-0000"
    result: StreamResult = asyncio.run(stream(stream_url(server.url), _speech(name),
                                              realtime=False))
    check_protocol(result)
    assert not result.errors
    assert wer(reference(name), result.text) <= 0.2
    assert set(RUNS) == {kind.name for kind in KINDS}
    print(f"{len(KINDS)} kinds, {sum(RUNS.values())} inputs, in {fuzzed_s:.1f} s")


# -- the cases a user meets, one by one ---------------------------------------------------


def _pcm(name: str) -> np.ndarray:
    return np.frombuffer(b"".join(_speech(name)), "<i2").astype(np.float32) / 32768.0


def _chunked(data: bytes, step: int) -> list[bytes]:
    return [data[i : i + step] for i in range(0, len(data), step)]


async def test_nan_and_inf_in_float_audio_do_not_poison_the_decoder(
        server: RunningServer) -> None:
    name = "libri_test_61-70968-0002"
    audio = _pcm(name)
    audio[::97] = np.nan  # about 1% of the samples, all through the speech
    audio[::211] = np.inf
    audio[::307] = -np.inf
    result = await stream(stream_url(server.url, encoding="pcm_f32le"),
                          _chunked(audio.astype("<f4").tobytes(), 6400), realtime=False)
    check_protocol(result)
    assert not result.errors
    assert wer(reference(name), result.text) <= 0.25, result.text


async def test_clipped_speech_is_captioned(server: RunningServer) -> None:
    name = "libri_test_61-70968-0002"
    loud = _pcm(name) * 6.0  # a gain far too high: the peaks are cut off
    as_s16 = (np.clip(loud, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    as_f32 = loud.astype("<f4").tobytes()  # past +-1.0: the server clips
    for url, data in ((stream_url(server.url), as_s16),
                      (stream_url(server.url, encoding="pcm_f32le"), as_f32)):
        result = await stream(url, _chunked(data, 6400), realtime=False)
        check_protocol(result)
        assert not result.errors
        assert wer(reference(name), result.text) <= 0.35, result.text


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_flood_of_tiny_frames_costs_little_and_loses_nothing(
        server: RunningServer) -> None:
    name = "libri_test_61-70968-0002"
    pcm = b"".join(_speech(name))
    split = 2 * 16000  # the first second as 16,000 frames of one sample each
    tiny = [pcm[i : i + 2] for i in range(0, split, 2)]
    speech = _chunked(pcm, 3200)
    keepalives = 4000

    async def server_cpu(chunks: list[bytes | str]) -> tuple[float, StreamResult]:
        before = _cpu_s(server.process.pid)
        result = await stream(stream_url(server.url), chunks, realtime=False)
        return _cpu_s(server.process.pid) - before, result

    plain, _ = await server_cpu(list(speech))
    flood, result = await server_cpu([*tiny, *_chunked(pcm[split:], 3200)])
    check_protocol(result)
    assert not result.errors
    assert wer(reference(name), result.text) <= 0.2, result.text
    # What a message costs the server at the least, measured on this machine now: a
    # keepalive, read and dropped. A one-sample audio frame, batched with the next ones
    # before any audio work, costs about as much; handled one by one (converted, segmented)
    # it would cost far more. CPU seconds, not wall time: the client's own cost of sending
    # 16,000 frames, and whatever else the machine runs, do not count. The bound leaves room
    # for a busy machine (its caches and scheduler make every message dearer, unevenly):
    # 3x passed on a quiet machine, and once failed at 3.1x with 8 processes on 2 cores.
    idle, _ = await server_cpu(['{"type":"keepalive"}'] * keepalives)
    per_frame = (flood - plain) / len(tiny)
    per_keepalive = idle / keepalives
    print(f"16k one-sample frames + {len(pcm) / 32000 - 1:.1f} s of speech: server CPU "
          f"{flood:.2f} s ({plain:.2f} s as 100 ms frames); {per_frame * 1e6:.0f} us a frame, "
          f"{per_keepalive * 1e6:.0f} us a keepalive")
    assert per_frame <= 6 * per_keepalive, (per_frame, per_keepalive)


async def test_a_long_text_frame_is_refused_without_echoing_it(server: RunningServer) -> None:
    huge = json.dumps({"type": "x" * 1_000_000})
    result = await stream(stream_url(server.url), [huge, '{"type":"' + "y" * 3000 + '"}'],
                          realtime=False)
    check_protocol(result)
    errors = result.errors
    assert [e["code"] for e in errors] == ["bad_request", "bad_request"]
    assert "not a control message" in errors[0]["message"]
    assert all(len(e["message"]) < 200 for e in errors)  # the client's text is not echoed
