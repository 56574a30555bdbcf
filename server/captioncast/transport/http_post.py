"""POST routes on the WebSocket port: non-GET connections are handed from websockets to h11.

websockets parses only GET requests (a WebSocket handshake is always a GET), so a POST
on its port fails before `process_request` sees it. `SniffingConnection`, passed to
`serve(create_connection=...)`, looks at the first bytes of each connection: a GET goes
on to websockets untouched (routes, upgrades, its timeouts); anything else is moved,
transport and bytes already read, to an HTTP/1.1 loop built on h11 with keep-alive,
`Expect: 100-continue`, streamed request bodies and streamed (chunked) responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

import h11
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from captioncast.errors import BadRequest, CaptioncastError, SessionTimeout, TooLarge
from captioncast.transport.security import Gatekeeper, http_refusal, peer_host

log = logging.getLogger("captioncast.http")

SNIFF_BYTES = len(b"GET ")
SNIFF_TIMEOUT_S = 10.0  # websockets' own open_timeout; a silent connection is dropped
KEEPALIVE_TIMEOUT_S = 30.0  # an idle keep-alive connection waiting for its next request
BODY_IDLE_TIMEOUT_S = 60.0  # no body bytes for this long: 408
SEND_TIMEOUT_S = 30.0  # a client that reads none of the response for this long is dropped
READ_CHUNK = 64 * 1024
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; h11 answers 431-style errors past it

STATUS = {
    "bad_request": 400, "bad_audio": 400, "unauthorized": 401, "too_large": 413,
    "timeout": 408, "overloaded": 503, "internal": 500,
}


def status_of(error: CaptioncastError) -> int:
    return STATUS.get(error.code, 500)


class Body:
    """The request body as it arrives, in chunks, within a size limit the route sets."""

    def __init__(self, exchange: _Exchange, length: int | None) -> None:
        self._exchange = exchange
        self.length = length  # Content-Length, or None for a chunked body
        self.received = 0
        self._consumed = False

    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """Yield body bytes; TooLarge as soon as the body is known to pass `limit` bytes."""
        if self._consumed:
            raise RuntimeError("the body can be read once")
        self._consumed = True
        if self.length is not None and self.length > limit:
            raise TooLarge(f"body of {self.length} bytes is over the limit of {limit} bytes")
        await self._exchange.continue_if_expected()
        while True:
            event = await self._exchange.next_event(BODY_IDLE_TIMEOUT_S, in_body=True)
            if isinstance(event, h11.EndOfMessage):
                return
            assert isinstance(event, h11.Data)
            self.received += len(event.data)
            if self.received > limit:
                raise TooLarge(f"body is over the limit of {limit} bytes")
            yield bytes(event.data)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # path and query, as sent
    path: str
    query: list[tuple[str, str]]
    headers: Headers
    body: Body = field(repr=False)

    def query_dict(self) -> dict[str, str]:
        """The query as a dict; a parameter given twice is a BadRequest."""
        out: dict[str, str] = {}
        for key, value in self.query:
            if key in out:
                raise BadRequest(f"query parameter {key} is given twice")
            out[key] = value
        return out


@dataclass
class HttpResponse:
    """`body` is the whole body, or an async iterator of chunks sent as they come."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, body: object) -> HttpResponse:
    return HttpResponse(status, (json.dumps(body, ensure_ascii=False) + "\n").encode())


def error_response(error: CaptioncastError) -> HttpResponse:
    status, headers = http_refusal(error) or (status_of(error), [])
    response = json_response(status, {"error": error.code, "message": error.message})
    response.headers.extend(headers)
    return response


PostHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
GetRoute = Callable[[Request], Response | None]


class _Exchange:
    """One connection's h11 state and streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.reader = reader
        self.writer = writer
        self.refusal: CaptioncastError | None = None  # every request gets this error

    async def next_event(self, timeout: float, in_body: bool = False) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.PAUSED:  # a pipelined request waits for start_next_cycle
                raise RuntimeError("next_event after the end of a request")
            if event is not h11.NEED_DATA:
                assert not isinstance(event, type)
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(READ_CHUNK), timeout)
            except TimeoutError:
                if in_body:
                    raise SessionTimeout(f"no body bytes for {timeout:.0f} s") from None
                raise
            self.conn.receive_data(data)  # b"": the peer closed; h11 reports it

    async def continue_if_expected(self) -> None:
        if self.conn.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), SEND_TIMEOUT_S)

    def skip_received_body(self) -> bool:
        """Discard what is already here of a body the route did not read (an empty one,
        for a GET); False if more of it is still to come."""
        while self.conn.their_state is h11.SEND_BODY:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                return False
        return True

    @property
    def can_respond(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)


class HttpFront:
    """The HTTP/1.1 side of the port: POST routes, and GETs that follow them on a connection."""

    def __init__(self, server_header: str, get_route: GetRoute,
                 gate: Gatekeeper | None = None) -> None:
        self.server_header = server_header
        self.get_route = get_route
        self.gate = gate  # tokens, origins and connections per address, as for WebSockets
        self.post_routes: dict[str, PostHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    def route(self, path: str, handler: PostHandler) -> None:
        self.post_routes[path] = handler

    def connection_class(self) -> type[ServerConnection]:
        """The `create_connection` for websockets' `serve`, bound to this front."""
        front = self

        class Bound(SniffingConnection):
            http_front = front

        return Bound

    def adopt(self, transport: asyncio.Transport, first: bytes) -> None:
        """Take over a connection whose first bytes are not a GET."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * READ_CHUNK, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        reader.feed_data(first)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        task = loop.create_task(self._serve(_Exchange(reader, writer)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Shutting down: idle connections close, requests in progress get 503."""
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    # -- one connection -------------------------------------------------------------

    async def _serve(self, exchange: _Exchange) -> None:
        peer = exchange.writer.get_extra_info("peername")
        with contextlib.ExitStack() as held:
            if self.gate is not None:
                try:
                    held.enter_context(self.gate.connection(peer_host(peer)))
                except CaptioncastError as error:
                    exchange.refusal = error  # answered to its first request, then closed
            await self._serve_requests(exchange, peer)

    async def _serve_requests(self, exchange: _Exchange, peer: object) -> None:
        try:
            while not self.closing:
                try:
                    event = await exchange.next_event(KEEPALIVE_TIMEOUT_S)
                except TimeoutError:
                    return
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request)
                await self._respond(exchange, event, peer)
                if exchange.refusal is not None:
                    return
                if not exchange.skip_received_body():
                    await _linger(exchange)  # refused before its body was read
                    return
                if exchange.conn.our_state is h11.MUST_CLOSE:
                    return  # HTTP/1.0 or Connection: close
                exchange.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            # Garbage, an over-long head, a bad chunk: answer if we still can, then close.
            if exchange.can_respond:
                with contextlib.suppress(Exception):
                    await self._send(exchange, json_response(
                        exc.error_status_hint,
                        {"error": "bad_request", "message": f"malformed HTTP request: {exc}"}))
        except asyncio.CancelledError:
            # Shutdown: a request in progress gets a 503 written without waiting on the peer.
            if exchange.can_respond and exchange.conn.their_state is not h11.IDLE:
                with contextlib.suppress(Exception):
                    response = json_response(
                        503, {"error": "overloaded", "message": "the server is shutting down"})
                    assert isinstance(response.body, bytes)
                    for part in (_head(self, response, len(response.body), close=True),
                                 h11.Data(data=response.body), h11.EndOfMessage()):
                        exchange.writer.write(exchange.conn.send(part) or b"")
        except (OSError, TimeoutError, h11.LocalProtocolError) as exc:
            log.info("event=http_connection_dropped peer=%s reason=%r", peer, exc)
        finally:
            exchange.writer.close()

    async def _respond(self, exchange: _Exchange, event: h11.Request, peer: object) -> None:
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        split = urlsplit(target)
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in event.headers])
        length = headers.get("Content-Length")
        request = HttpRequest(
            method, target, split.path, parse_qsl(split.query, keep_blank_values=True), headers,
            Body(exchange, int(length) if length is not None else None),
        )
        try:
            if exchange.refusal is not None:
                raise exchange.refusal
            response = await self._dispatch(request)
        except CaptioncastError as error:
            response = error_response(error)
        except h11.RemoteProtocolError:
            raise
        except Exception:
            log.exception("event=http_handler_failed method=%s path=%s", method, split.path)
            response = json_response(500, {"error": "internal", "message": "internal error"})
        log.info("event=http_request peer=%s method=%s path=%s status=%d body_bytes=%d",
                 peer, method, split.path, response.status, request.body.received)
        if exchange.can_respond:
            await self._send(exchange, response, head_only=method == "HEAD")

    async def _dispatch(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD"):
            answer = self.get_route(Request(request.target, request.headers))
            if answer is None:
                raise BadRequest("a WebSocket upgrade must be the first request on its connection")
            return HttpResponse(answer.status_code, bytes(answer.body),
                                answer.headers.get("Content-Type", "application/octet-stream"),
                                [(k, v) for k, v in answer.headers.raw_items()
                                 if k.lower() not in ("content-type", "content-length")])
        if self.gate is not None:
            self.gate.check(request.target, request.headers)
        handler = self.post_routes.get(request.path)
        if handler is None:
            if self._is_get_route(request):
                response = json_response(405, {"error": "bad_request",
                                               "message": f"{request.path} takes GET"})
                response.headers.append(("Allow", "GET, HEAD"))
                return response
            known = ", ".join(sorted(self.post_routes))
            return json_response(404, {"error": "not_found",
                                       "message": f"no POST route {request.path}; see {known}"})
        if request.method != "POST":
            response = json_response(405, {"error": "bad_request",
                                           "message": f"{request.path} takes POST"})
            response.headers.append(("Allow", "POST"))
            return response
        return await handler(request)

    def _is_get_route(self, request: HttpRequest) -> bool:
        """Whether a GET of this path would be answered (a page, a WebSocket route)."""
        answer = self.get_route(Request(request.target, request.headers))
        return answer is None or answer.status_code != 404

    async def _send(self, exchange: _Exchange, response: HttpResponse,
                    head_only: bool = False) -> None:
        if isinstance(response.body, bytes):
            await exchange.send(_head(self, response, len(response.body)))
            if response.body and not head_only:
                await exchange.send(h11.Data(data=response.body))
            await exchange.send(h11.EndOfMessage())
            return
        # Streamed: chunked for HTTP/1.1 clients, h11 picks close-delimited for HTTP/1.0.
        await exchange.send(_head(self, response, None))
        async for chunk in response.body:
            if chunk:
                await exchange.send(h11.Data(data=chunk))
        await exchange.send(h11.EndOfMessage())


def _head(front: HttpFront, response: HttpResponse, length: int | None,
          close: bool = False) -> h11.Response:
    headers = [("Server", front.server_header), ("Content-Type", response.content_type),
               ("Cache-Control", "no-store"), *response.headers]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    if close or front.closing:
        headers.append(("Connection", "close"))
    return h11.Response(status_code=response.status, headers=headers,
                        reason=_phrase(response.status))


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


LINGER_S = 2.0  # long enough for a client still sending to read our answer


async def _linger(exchange: _Exchange) -> None:
    """Half-close and discard what the client still sends, so that it reads the response
    (a 413, say) instead of a connection reset."""
    with contextlib.suppress(OSError, TimeoutError):
        if exchange.writer.can_write_eof():
            exchange.writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            while await exchange.reader.read(READ_CHUNK):
                pass


class SniffingConnection(ServerConnection):
    """A websockets connection that first checks that the request is a GET.

    Until the first bytes decide, websockets has not started (no handshake task, no
    timeout of its own), so this class keeps a timeout of its own for silent peers.
    """

    http_front: ClassVar[HttpFront]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._sniff_transport = transport
        self._sniffed = b""
        self._sniffing = True
        self._sniff_timer = self.loop.call_later(SNIFF_TIMEOUT_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        if not self._sniffing:
            super().data_received(data)
            return
        self._sniffed += data
        if len(self._sniffed) < SNIFF_BYTES and b"GET ".startswith(self._sniffed):
            return
        self._sniffing = False
        self._sniff_timer.cancel()
        first, self._sniffed = self._sniffed, b""
        if first.startswith(b"GET "):
            super().connection_made(self._sniff_transport)  # websockets takes it from here
            super().data_received(first)
        else:
            self.http_front.adopt(self._sniff_transport, first)

    def eof_received(self) -> None:
        if self._sniffing:
            return  # closed before saying anything: the transport closes
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sniffing:
            self._sniffing = False
            self._sniff_timer.cancel()
            return
        super().connection_lost(exc)
