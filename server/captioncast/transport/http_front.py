"""The HTTP/1.1 side of the port: POST routes, and the GETs that follow them on a connection.

Connections come from transport/sniff.py; each one is served on an h11 `Exchange`
(transport/http_exchange.py) with keep-alive, `Expect: 100-continue`, streamed request
bodies and streamed (chunked) responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

import h11
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request

from captioncast.errors import BadRequest, CaptioncastError
from captioncast.transport.http_exchange import (
    KEEPALIVE_TIMEOUT_S,
    READ_CHUNK,
    Body,
    Exchange,
    HttpRequest,
    linger,
)
from captioncast.transport.responses import HttpResponse, json_response, phrase, refusal_response
from captioncast.transport.security import Gatekeeper, peer_host
from captioncast.transport.sniff import sniffing

log = logging.getLogger("captioncast.http")

PostHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
GetRoute = Callable[[Request], HttpResponse | None]


class HttpFront:
    """The HTTP/1.1 side of the port: POST routes, and GETs that follow them on a connection."""

    def __init__(self, server_header: str, get_route: GetRoute,
                 gate: Gatekeeper | None = None) -> None:
        self.server_header = server_header
        self.get_route = get_route
        self.gate = gate  # tokens, origins and connections per address, as for WebSockets
        self.post_routes: dict[str, PostHandler] = {}
        # Paths with a name in them (/v1/channels/NAME/outputs): pattern, method, handler.
        self.pattern_routes: list[tuple[re.Pattern[str], str, PostHandler]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    def route(self, path: str, handler: PostHandler) -> None:
        self.post_routes[path] = handler

    def route_pattern(self, pattern: re.Pattern[str], method: str, handler: PostHandler) -> None:
        self.pattern_routes.append((pattern, method, handler))

    def connection_class(self) -> type[ServerConnection]:
        """The `create_connection` for websockets' `serve`, bound to this front."""
        return sniffing(self.adopt)

    def adopt(self, transport: asyncio.Transport, first: bytes) -> None:
        """Take over a connection whose first bytes are not a GET."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * READ_CHUNK, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        reader.feed_data(first)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        task = loop.create_task(self._serve(Exchange(reader, writer)))
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

    async def _serve(self, exchange: Exchange) -> None:
        peer = exchange.writer.get_extra_info("peername")
        with contextlib.ExitStack() as held:
            if self.gate is not None:
                try:
                    held.enter_context(self.gate.connection(peer_host(peer)))
                except CaptioncastError as error:
                    exchange.refusal = error  # answered to its first request, then closed
            await self._serve_requests(exchange, peer)

    async def _serve_requests(self, exchange: Exchange, peer: object) -> None:
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
                    await linger(exchange)  # refused before its body was read
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

    async def _respond(self, exchange: Exchange, event: h11.Request, peer: object) -> None:
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
            response = refusal_response(error)
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
            return answer
        if self.gate is not None:
            self.gate.check(request.target, request.headers)
        matched = [(m, h) for p, m, h in self.pattern_routes if p.fullmatch(request.path)]
        if matched:
            return await self._dispatch_pattern(request, matched)
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

    async def _dispatch_pattern(self, request: HttpRequest,
                                matched: list[tuple[str, PostHandler]]) -> HttpResponse:
        for method, handler in matched:
            if request.method == method:
                return await handler(request)
        allowed = [m for m, _ in matched] + (["GET", "HEAD"] if self._is_get_route(request)
                                             else [])
        response = json_response(405, {"error": "bad_request", "message":
                                       f"{request.path} takes {', '.join(allowed)}"})
        response.headers.append(("Allow", ", ".join(allowed)))
        return response

    def _is_get_route(self, request: HttpRequest) -> bool:
        """Whether a GET of this path would be answered (a page, a WebSocket route)."""
        answer = self.get_route(Request(request.target, request.headers))
        return answer is None or answer.status != 404

    async def _send(self, exchange: Exchange, response: HttpResponse,
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
                        reason=phrase(response.status))
