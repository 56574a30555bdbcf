"""One HTTP/1.1 connection on h11: its events in, its bytes out, its request body as a stream.

`transport/http_front.py` serves requests through an `Exchange`; `transport/sniff.py`
decides which connections come here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11
from websockets.datastructures import Headers

from captioncast.errors import BadRequest, CaptioncastError, SessionTimeout, TooLarge

KEEPALIVE_TIMEOUT_S = 30.0  # an idle keep-alive connection waiting for its next request
BODY_IDLE_TIMEOUT_S = 60.0  # no body bytes for this long: 408
SEND_TIMEOUT_S = 30.0  # a client that reads none of the response for this long is dropped
READ_CHUNK = 64 * 1024
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; h11 answers 431-style errors past it


class Body:
    """The request body as it arrives, in chunks, within a size limit the route sets."""

    def __init__(self, exchange: Exchange, length: int | None) -> None:
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


class Exchange:
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


LINGER_S = 2.0  # long enough for a client still sending to read our answer


async def linger(exchange: Exchange) -> None:
    """Half-close and discard what the client still sends, so that it reads the response
    (a 413, say) instead of a connection reset."""
    with contextlib.suppress(OSError, TimeoutError):
        if exchange.writer.can_write_eof():
            exchange.writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            while await exchange.reader.read(READ_CHUNK):
                pass


