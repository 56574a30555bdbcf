"""The one connection handler: bytes between a WebSocket and its LiveSession, in any wire format.

A `Connection` is given a translator (api/): the translator says what each client message
asks of the session and how each event is said; the connection reads, sends, times out
and closes. `/v1/stream` is the native translator's route; the compatible APIs'
(transport/compat_routes.py) open their sessions with `open_session` and `serve` them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from captioncast.api.native import NativeTranslator
from captioncast.api.translator import Translator
from captioncast.core.options import PolicyOptions
from captioncast.core.params import Configure, StreamParams, parse_stream_params
from captioncast.errors import BadRequest, CaptioncastError, Overloaded, SessionTimeout, TooLarge
from captioncast.options import ServerOptions
from captioncast.protocol import codes
from captioncast.protocol.events import Event
from captioncast.session.link import TAKEN_OVER
from captioncast.session.live_session import LiveSession
from captioncast.session.resume import EXPIRED
from captioncast.transport.security import peer_host, token_key
from captioncast.transport.server_context import ServerContext
from captioncast.transport.websocket import close_or_abort, peer_of, query_of, reject

log = logging.getLogger("captioncast.stream")

# Events waiting to be sent before we stop reading the client: a stream makes a few a
# second, but every bad frame earns an error event, and a client that sends faster than
# it reads would otherwise grow the queue without bound. Reading resumes at half.
MAX_UNSENT_EVENTS = 256


class Connection:
    """One WebSocket attached to a LiveSession: reads audio and control, sends events.

    The session outlives it: when the connection drops, the session waits for a resume.
    It is the session's `Link` and its translator's `Port`.
    """

    def __init__(self, connection: ServerConnection, live: LiveSession,
                 translator: Translator, options: ServerOptions) -> None:
        self.connection = connection
        self.live = live
        self.translator = translator
        self.options = options
        # str: sent as is (rendered already, or the translator's own message); an Event is
        # rendered as it is sent; the awaitable: a final's commit
        self._outbox: asyncio.Queue[tuple[Event | str, Awaitable[bool] | None] | None] = (
            asyncio.Queue())
        self._done = asyncio.Event()
        self._room = asyncio.Event()  # clear while MAX_UNSENT_EVENTS wait to be sent
        self._room.set()
        self._close: tuple[int, str] | None = None
        self._why = "closed"

    # -- Link: what the session asks of its connection ------------------------------------

    def send(self, event: Event | str, after: Awaitable[bool] | None = None) -> None:
        if self.translator.eager and not isinstance(event, str):
            for message in self.translator.render(event):
                self._queue(message, after)
                after = None
            return
        self._queue(event, after)

    def _queue(self, event: Event | str, after: Awaitable[bool] | None) -> None:
        self._outbox.put_nowait((event, after))
        if self._outbox.qsize() >= MAX_UNSENT_EVENTS:
            self._room.clear()

    def finish(self, code: int, reason: str) -> None:
        self._close = self.translator.close(code, reason)
        self._outbox.put_nowait(None)

    def take_over(self) -> None:
        self._close, self._why = TAKEN_OVER, "taken_over"
        self._done.set()

    async def wait_closed(self) -> None:
        await self.connection.wait_closed()

    # -- Port: what the translator asks of the session ------------------------------------

    def audio(self, frame: bytes) -> None:
        if len(frame) > self.options.max_frame_bytes:
            raise TooLarge(
                f"binary frame of {len(frame)} bytes is over the maximum of "
                f"{self.options.max_frame_bytes}"
            )
        if self.live.eos_received:
            self.live.report(BadRequest("audio after eos is ignored"))
            return
        self.live.audio(frame)

    def control(self, kind: str) -> None:
        self.live.control(kind)

    def name_speaker(self, label: str, name: str) -> None:
        self.live.name_speaker(label, name)

    def configure(self, change: Configure) -> None:
        self.live.configure(change)

    def report(self, error: CaptioncastError) -> None:
        self.live.report(error)

    def say(self, message: str) -> None:
        self.send(message)

    @property
    def in_speech(self) -> bool:
        return self.live.in_speech

    @property
    def open_utterance(self) -> int | None:
        return self.live.open_utterance

    @property
    def utterances_begun(self) -> int:
        return self.live.utterances_begun

    # -- the connection -------------------------------------------------------------------

    async def run(self, first: list[Event]) -> None:
        self.translator.start(self)
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
            await close_or_abort(self.connection, self.options.shutdown.close_timeout_s,
                                 code, reason)

    async def _send_loop(self) -> None:
        try:
            while (item := await self._outbox.get()) is not None:
                event, after = item
                if after is not None:
                    await after  # its commit, bounded by the store (fanout/archive.py)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation
                # that arrives as its awaitable completes.
                for message in ([event] if isinstance(event, str)
                                else self.translator.render(event)):
                    async with asyncio.timeout(self.options.send_timeout_s):
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
        options = self.options
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
                    self.translator.binary(message, self)
                else:
                    self.translator.text(message, self)
        except ConnectionClosedOK:
            self._why = "closed"  # the client closed cleanly (it may have read `end`)
            self._done.set()
        except ConnectionClosed:
            self._why = "connection_lost"
            self._done.set()
        except CaptioncastError as error:
            self.live.fail(error)


def find_resumable(ctx: ServerContext, params: StreamParams) -> LiveSession:
    """The live session `params.resume` names, or BadRequest saying what to do instead."""
    assert params.resume is not None
    if ctx.draining:
        raise Overloaded("the server is shutting down; resume on another node")
    live = ctx.sessions.get(params.resume)
    if not isinstance(live, LiveSession):
        raise BadRequest(EXPIRED)
    live.resumable_by(params)
    return live


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
    handler = Connection(connection, live, NativeTranslator(), ctx.options)
    await handler.run(live.attach(handler, since, peer_of(connection)))


def open_session(connection: ServerConnection, ctx: ServerContext, params: StreamParams,
                 policy: PolicyOptions | None = None) -> LiveSession:
    """Admit and open a new live session as /v1/stream does, by its address and token
    (Overloaded when there is no room): a compatible API's."""
    address = peer_host(connection.remote_address)
    request = connection.request
    token = None if request is None else token_key(request.path, request.headers)
    ctx.admit(address, token)
    live = LiveSession(secrets.token_urlsafe(12), params, ctx, address, token, policy=policy)
    live.open()
    return live


async def serve(handler: Connection) -> None:
    """Run a compatible API's `handler` on its session to the end; then end the session,
    since nobody can resume it: what it already heard is still finalized (channel viewers
    get it)."""
    live = handler.live
    try:
        await handler.run(live.attach(handler, None, peer_of(handler.connection)))
    finally:
        live.expire_now()
