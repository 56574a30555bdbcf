"""`/v1/stream`: moves bytes between one WebSocket and the LiveSession it is attached to."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from captioncast.core.params import parse_control, parse_stream_params
from captioncast.errors import BadRequest, CaptioncastError, SessionTimeout, TooLarge
from captioncast.protocol import codes
from captioncast.protocol.events import Event
from captioncast.session.live_session import TAKEN_OVER, LiveSession, find_resumable
from captioncast.transport.security import peer_host, token_key
from captioncast.transport.server_context import ServerContext
from captioncast.transport.websocket import close_or_abort, peer_of, query_of, reject

log = logging.getLogger("captioncast.stream")

# Events waiting to be sent before we stop reading the client: a stream makes a few a
# second, but every bad frame earns an error event, and a client that sends faster than
# it reads would otherwise grow the queue without bound. Reading resumes at half.
MAX_UNSENT_EVENTS = 256


class StreamHandler:
    """One WebSocket attached to a LiveSession: reads audio and control, sends events.

    The session outlives it: when the connection drops, the session waits for a resume.
    """

    def __init__(self, connection: ServerConnection, live: LiveSession) -> None:
        self.connection = connection
        self.live = live
        self.ctx = live.ctx
        # str: sent as is (a compatible API's own message); the awaitable: a final's commit
        self._outbox: asyncio.Queue[tuple[Event | str, Awaitable[bool] | None] | None] = (
            asyncio.Queue())
        self._done = asyncio.Event()
        self._room = asyncio.Event()  # clear while MAX_UNSENT_EVENTS wait to be sent
        self._room.set()
        self._close: tuple[int, str] | None = None
        self._why = "closed"

    # -- Link: what the session asks of its connection ------------------------------------

    def send(self, event: Event | str, after: Awaitable[bool] | None = None) -> None:
        self._outbox.put_nowait((event, after))
        if self._outbox.qsize() >= MAX_UNSENT_EVENTS:
            self._room.clear()

    def finish(self, code: int, reason: str) -> None:
        self._close = (code, reason)
        self._outbox.put_nowait(None)

    def take_over(self) -> None:
        self._close, self._why = TAKEN_OVER, "taken_over"
        self._done.set()

    async def wait_closed(self) -> None:
        await self.connection.wait_closed()

    # -- the wire format: a compatible API (transport/deepgram.py...) overrides these -----

    def render(self, event: Event) -> list[str]:
        """The messages that say `event` on this connection."""
        return [event.to_json()]

    # -- the connection -------------------------------------------------------------------

    async def run(self, first: list[Event]) -> None:
        for event in first:
            self.send(event)
        if self.live.over:  # resumed after its end: replay, then close
            self.finish(codes.NORMAL, "end of stream")
        try:
            async with asyncio.TaskGroup() as group:
                sender = group.create_task(self._send_loop())
                receiver = group.create_task(self._receive_loop())
                await self._done.wait()
                receiver.cancel()
                sender.cancel()
        finally:
            self.live.detach(self, self._why)
        if self._close is not None:
            code, reason = self._close
            await close_or_abort(self.connection, self.ctx.options.shutdown.close_timeout_s,
                                 code, reason)

    async def _send_loop(self) -> None:
        try:
            while (item := await self._outbox.get()) is not None:
                event, after = item
                if after is not None:
                    await after  # its commit, bounded by the store (fanout/archive.py)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation
                # that arrives as its awaitable completes.
                for message in [event] if isinstance(event, str) else self.render(event):
                    async with asyncio.timeout(self.ctx.options.send_timeout_s):
                        await self.connection.send(message)
                if self._outbox.qsize() <= MAX_UNSENT_EVENTS // 2:
                    self._room.set()
        except ConnectionClosed:
            self._why = "connection_lost"
        except TimeoutError:
            # The client stopped reading (or its network is gone). Its socket is full, so
            # not even a close frame would reach it: cut it. The session stays: a client
            # that is still there resumes it.
            self._close = None
            self._why = "send_timeout"
            self.connection.transport.abort()
        self._done.set()

    async def _receive_loop(self) -> None:
        options = self.ctx.options
        try:
            while True:
                # Back-pressure: a client that does not read its events is not read either,
                # until its sends stall and send_timeout_s lets it go.
                await self._room.wait()
                # After eos (or the session limit) the client waits for its finals: it
                # owes no audio or keepalive while they are decoded.
                idle = options.idle_timeout_s if self.live.taking_audio else None
                try:
                    async with asyncio.timeout(idle):
                        message = await self.connection.recv()
                except TimeoutError:
                    raise SessionTimeout(
                        f"no audio or keepalive for {options.idle_timeout_s:.0f} s"
                    ) from None
                if self._done.is_set() or self.live.over:
                    return  # `end` (or a fatal error) is out: nothing more is said
                if isinstance(message, bytes):
                    self._audio(message)
                else:
                    self._control(message)
        except ConnectionClosedOK:
            self._why = "closed"  # the client closed cleanly (it may have read `end`)
            self._done.set()
        except ConnectionClosed:
            self._why = "connection_lost"
            self._done.set()
        except CaptioncastError as error:
            self.live.fail(error)

    def _audio(self, frame: bytes) -> None:
        if len(frame) > self.ctx.options.max_frame_bytes:
            raise TooLarge(
                f"binary frame of {len(frame)} bytes is over the maximum of "
                f"{self.ctx.options.max_frame_bytes}"
            )
        if self.live.eos_received:
            self.live.report(BadRequest("audio after eos is ignored"))
            return
        self.live.audio(frame)

    def _control(self, text: str) -> None:
        try:
            kind = parse_control(text)
        except CaptioncastError as error:
            self.live.report(error)
            return
        self.live.control(kind)


async def handle_stream(connection: ServerConnection, ctx: ServerContext) -> None:
    since: int | None = None
    try:
        params = parse_stream_params(query_of(connection))
        ctx.check_model_support(params)
        if params.resume is not None:
            live = find_resumable(ctx, params)
            since = params.since
        else:
            address = peer_host(connection.remote_address)
            request = connection.request
            token = None if request is None else token_key(request.path, request.headers)
            ctx.admit(address, token)
            if params.channel is not None:
                await ctx.channels.prepare(params.channel)  # its seq goes on from the store
            live = LiveSession(secrets.token_urlsafe(12), params, ctx, address, token)
            live.open()
    except CaptioncastError as error:
        log.info("event=session_refused peer=%s code=%s message=%r", peer_of(connection),
                 error.code, error.message)
        ctx.telemetry.refused(error.code)
        await reject(connection, error)
        return
    handler = StreamHandler(connection, live)
    await handler.run(live.attach(handler, since, peer_of(connection)))
