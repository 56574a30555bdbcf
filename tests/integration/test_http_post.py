"""GETs, WebSocket upgrades and POSTs on one websockets port (transport/sniff.py, http_front.py).

A real websockets server with the sniffing connection, real sockets, no model.
"""

from __future__ import annotations

import asyncio
import http
import http.client
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from captioncast.errors import BadRequest
from captioncast.transport import sniff
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.http_front import HttpFront
from captioncast.transport.responses import HttpResponse, json_response, to_websockets
from tests.integration.conftest import free_port

LIMIT = 100_000


def get_route(request: Request) -> HttpResponse | None:
    if request.path.startswith("/echo"):
        return None  # a WebSocket route
    if request.path.startswith("/missing"):
        return json_response(http.HTTPStatus.NOT_FOUND, {"error": "not_found"})
    return json_response(http.HTTPStatus.OK, {"path": request.path})


def process_request(request: Request) -> Response | None:
    answer = get_route(request)
    return None if answer is None else to_websockets(answer)


async def count_body(request: HttpRequest) -> HttpResponse:
    total = 0
    async for chunk in request.body.chunks(LIMIT):
        total += len(chunk)
    return json_response(200, {"bytes": total, "query": request.query_dict()})


async def stream_lines(request: HttpRequest) -> HttpResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0.01)
    return HttpResponse(200, lines(), "application/x-ndjson")


async def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a handler")


SLOW_STARTED: list[asyncio.Event] = []  # set once the /slow handler runs, one per test


async def slow(request: HttpRequest) -> HttpResponse:
    for started in SLOW_STARTED:
        started.set()
    await asyncio.sleep(30)  # longer than any test waits: the request stays in progress
    return json_response(200, {})


async def refuse(request: HttpRequest) -> HttpResponse:
    raise BadRequest("nothing is accepted here")


@pytest.fixture
async def front() -> AsyncIterator[tuple[HttpFront, int]]:
    front = HttpFront("captioncast/test", get_route)
    for path, handler in (("/count", count_body), ("/lines", stream_lines),
                          ("/fail", fail), ("/slow", slow), ("/refuse", refuse)):
        front.route(path, handler)

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    port = free_port()
    async with serve(echo, "127.0.0.1", port, process_request=lambda c, r: process_request(r),
                     create_connection=front.connection_class()) as server:
        yield front, port
        await front.close()
        server.close()


def fetch(port: int, requests: list[tuple[str, str, bytes | Iterable[bytes] | None,
                                         dict[str, str]]]
          ) -> list[tuple[int, dict[str, str], bytes]]:
    """Blocking: several requests on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for method, path, body, headers in requests:
        conn.request(method, path, body=body, headers=headers,
                     encode_chunked="Transfer-Encoding" in headers)
        response = conn.getresponse()
        out.append((response.status, dict(response.getheaders()), response.read()))
    conn.close()
    return out


async def raw(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1) if read_until_close else
                                      reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


async def test_get_routes_upgrades_and_posts_share_the_port(front: tuple[HttpFront, int]
                                                            ) -> None:
    _, port = front
    [(status, _, body)] = await asyncio.to_thread(fetch, port, [("GET", "/healthz", None, {})])
    assert status == 200 and json.loads(body) == {"path": "/healthz"}
    async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
    [(status, _, body)] = await asyncio.to_thread(
        fetch, port, [("POST", "/count?a=1", b"x" * 5000, {})])
    assert status == 200 and json.loads(body) == {"bytes": 5000, "query": {"a": "1"}}


async def test_keep_alive_serves_posts_then_a_get_on_one_connection(
        front: tuple[HttpFront, int]) -> None:
    _, port = front
    answers = await asyncio.to_thread(fetch, port, [
        ("POST", "/count", b"a" * 10, {}),
        ("POST", "/count", b"b" * 20, {}),
        ("GET", "/after-post", None, {}),
        ("POST", "/lines", b"", {}),
    ])
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    assert json.loads(answers[0][2])["bytes"] == 10 and json.loads(answers[1][2])["bytes"] == 20
    assert json.loads(answers[2][2]) == {"path": "/after-post"}
    assert answers[3][2] == b"line 0\nline 1\nline 2\n"
    assert answers[3][1]["Transfer-Encoding"] == "chunked"


async def test_a_chunked_upload_is_streamed_and_counted(front: tuple[HttpFront, int]) -> None:
    _, port = front

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"z" * 1000

    [(status, _, body)] = await asyncio.to_thread(
        fetch, port, [("POST", "/count", chunks(), {"Transfer-Encoding": "chunked"})])
    assert status == 200 and json.loads(body)["bytes"] == 10_000


async def test_expect_100_continue_and_413_before_the_body_is_sent(
        front: tuple[HttpFront, int]) -> None:
    _, port = front
    head = (b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
            b"Expect: 100-continue\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(
        b"HTTP/1.1 100 ")
    writer.write(b"y" * 2000)
    answer = await asyncio.wait_for(reader.readuntil(b"}\n"), 5)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"bytes": 2000' in answer
    writer.close()

    too_big = (b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
               b"Expect: 100-continue\r\n\r\n" % (LIMIT + 1))
    answer = await raw(port, too_big)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"too_large" in answer
    assert b"HTTP/1.1 100" not in answer


async def test_a_chunked_body_past_the_limit_gets_413_while_it_is_still_sending(
        front: tuple[HttpFront, int]) -> None:
    _, port = front
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (10_000, b"q" * 10_000)
    for _ in range(15):  # 150 kB: past the limit, and the client is not done
        writer.write(chunk)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(-1), 10)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"over the limit" in answer
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"BREW /missing/coffee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
        # a path that GET answers, with another method: 405 and Allow
        (b"BREW /coffee HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"405"),
        (b"PUT /count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
         b"405"),
        (b"POST /count HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"400"),  # no Host
        (b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n", b"400"),
        (b"POST /fail HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
         b"500"),
        (b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
         b"400"),
    ],
)
async def test_bad_requests_get_an_error_with_a_message_and_the_server_goes_on(
        front: tuple[HttpFront, int], request_bytes: bytes, status: bytes) -> None:
    _, port = front
    answer = await raw(port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["message"]
    [(ok, _, _)] = await asyncio.to_thread(fetch, port, [("POST", "/count", b"1", {})])
    assert ok == 200


async def test_a_request_split_across_packets_is_still_sniffed(
        front: tuple[HttpFront, int], monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = front
    sniffed: list[bytes] = []  # what the sniffing connection was handed, read by read
    original = sniff.SniffingConnection.data_received

    def recording(self: sniff.SniffingConnection, data: bytes) -> None:
        sniffed.append(data)
        original(self, data)

    monkeypatch.setattr(sniff.SniffingConnection, "data_received", recording)

    async def send_in_parts(parts: tuple[bytes, ...]) -> asyncio.StreamReader:
        """Each part is read by the server before the next one is sent: separate reads."""
        sniffed.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        for i, part in enumerate(parts):
            writer.write(part)
            await writer.drain()
            if i < len(parts) - 1:
                await _until(lambda reads=i + 1: len(sniffed) == reads)
        return reader

    writers: list[asyncio.StreamWriter] = []
    reader = await send_in_parts((b"G", b"E", b"T /split HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert b'"/split"' in await asyncio.wait_for(reader.read(-1), 10)
    assert sniffed[:2] == [b"G", b"E"]
    # "P" is no GET: the HTTP front takes over from the first byte on
    reader = await send_in_parts((b"P", b"OST /count HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Length: 3\r\n\r\nabc"))
    assert b'"bytes": 3' in await asyncio.wait_for(reader.readuntil(b"}\n"), 10)
    assert sniffed == [b"P"]
    for writer in writers:
        writer.close()


async def _until(condition: Callable[[], bool], deadline_s: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def test_a_silent_connection_is_dropped(front: tuple[HttpFront, int],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = front
    monkeypatch.setattr(sniff, "SNIFF_TIMEOUT_S", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(-1), 5) == b""
    writer.close()


async def test_shutdown_answers_a_request_in_progress_with_503(
        front: tuple[HttpFront, int]) -> None:
    http_front, port = front
    started = asyncio.Event()
    SLOW_STARTED.append(started)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(started.wait(), 10)  # the request is in progress
    finally:
        SLOW_STARTED.remove(started)
    await http_front.close()
    answer = await asyncio.wait_for(reader.read(-1), 5)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"shutting down" in answer
    writer.close()
