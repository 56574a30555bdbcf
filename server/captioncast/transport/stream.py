"""`/v1/stream`: moves bytes between one WebSocket and one CaptionSession."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import secrets
import statistics
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from captioncast.core.audio import PcmConverter
from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.events import Error, Event, Final, Partial
from captioncast.core.params import StreamParams, parse_control, parse_stream_params
from captioncast.core.policy import Action, Cancel, CaptionSession, SessionConfig
from captioncast.errors import BadRequest, CaptioncastError, SessionTimeout, TooLarge
from captioncast.transport.coalesce import FrameCoalescer

if TYPE_CHECKING:
    from captioncast.transport.server import ServerContext

log = logging.getLogger("captioncast.stream")

# Events waiting to be sent before we stop reading the client: a stream makes a few a
# second, but every bad frame earns an error event, and a client that sends faster than
# it reads would otherwise grow the queue without bound. Reading resumes at half.
MAX_UNSENT_EVENTS = 256


class _ArrivalClock:
    """When each audio position arrived, to measure latency the way clients do."""

    def __init__(self) -> None:
        self._positions: list[int] = []
        self._times: list[float] = []

    def add(self, position: int, at: float) -> None:
        self._positions.append(position)
        self._times.append(at)
        if len(self._positions) > 4096:  # an hour of 20 ms frames would grow without bound
            del self._positions[:2048], self._times[:2048]

    def time_of(self, position: int) -> float | None:
        i = bisect.bisect_left(self._positions, position)
        return self._times[i] if i < len(self._times) else None


def query_of(connection: ServerConnection) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    assert connection.request is not None
    pairs = parse_qsl(urlsplit(connection.request.path).query, keep_blank_values=True)
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise BadRequest(f"query parameter {key} is given twice")
        query[key] = value
    return query


def check_model_support(params: StreamParams, ctx: ServerContext) -> None:
    if ctx.multilingual:
        return
    if params.language not in (None, "en", "auto"):
        raise BadRequest(
            f"model {ctx.model_name} is English-only: language={params.language} needs a "
            "multilingual model (start the server with --model base)"
        )
    if params.task == "translate":
        raise BadRequest(
            f"model {ctx.model_name} is English-only: task=translate needs a multilingual model"
        )


async def reject(connection: ServerConnection, error: CaptioncastError) -> None:
    """Report a fatal error as the first event, then close with its code."""
    event = Error(1, code=error.code, message=error.message)
    with contextlib.suppress(ConnectionClosed):
        await connection.send(event.to_json())
        await connection.close(error.close_code or 1011, error.message[:120])


class StreamHandler:
    """Owns one audio connection: reading, decoding through the scheduler, sending."""

    def __init__(self, connection: ServerConnection, params: StreamParams,
                 ctx: ServerContext) -> None:
        self.connection = connection
        self.params = params
        self.ctx = ctx
        self.session_id = secrets.token_urlsafe(12)
        language = params.language or ctx.options.language
        self.session = CaptionSession(
            SessionConfig(
                session_id=self.session_id,
                model=ctx.model_name,
                language=None if language in (None, "auto") else language,
                task=params.task,
                interim=params.interim,
                words=params.words,
                prompt=params.prompt,
                resume_until=0,
            ),
            ctx.options.policy,
        )
        self.converter = PcmConverter(params)
        self._pending = FrameCoalescer(params.sample_rate * params.bytes_per_frame)
        self._outbox: asyncio.Queue[Event | None] = asyncio.Queue()
        self._inflight: dict[int, asyncio.Future[DecodeResult]] = {}
        self._arrivals = _ArrivalClock()
        self._final_latencies: list[float] = []
        self._done = asyncio.Event()
        self._fatal: CaptioncastError | None = None
        self._eos = False
        self._room = asyncio.Event()  # clear while MAX_UNSENT_EVENTS wait to be sent
        self._room.set()
        self._receiver: asyncio.Task[None] | None = None
        self._going_away = False
        self.started = time.monotonic()

    # -- dispatch -----------------------------------------------------------------

    def dispatch(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, DecodeRequest):
                future = self.ctx.scheduler.submit(self.session_id, action)
                self._inflight[action.request_id] = future
                future.add_done_callback(functools.partial(self._decoded, action.request_id))
            elif isinstance(action, Cancel):
                self.ctx.scheduler.cancel(self.session_id, action.request_id)
                self._inflight.pop(action.request_id, None)
            else:
                self._note_latency(action)
                self._outbox.put_nowait(action)
                if self._outbox.qsize() >= MAX_UNSENT_EVENTS:
                    self._room.clear()
                if self.params.channel is not None:
                    self.ctx.channels.publish(self.params.channel, action)
        if self.session.finished:
            self._done.set()

    def _decoded(self, request_id: int, future: asyncio.Future[DecodeResult]) -> None:
        self._inflight.pop(request_id, None)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.dispatch(self.session.on_failure(request_id, str(exc) or type(exc).__name__))
        else:
            self.dispatch(self.session.on_result(request_id, future.result()))

    def _note_latency(self, event: Event) -> None:
        if isinstance(event, Final):
            self.ctx.on_final()
            sent = self._arrivals.time_of(int(event.end * 16000))
            if sent is not None:
                latency = time.monotonic() - sent
                self._final_latencies.append(latency)
                self.ctx.on_final_latency(latency)
        elif isinstance(event, Partial):
            sent = self._arrivals.time_of(int(event.end * 16000))
            self.ctx.on_partial(None if sent is None else time.monotonic() - sent)
        elif isinstance(event, Error):
            self.ctx.on_error(event.code)

    # -- the connection -----------------------------------------------------------

    async def run(self) -> None:
        self.ctx.sessions[self.session_id] = self
        log.info(
            "event=session_start session=%s peer=%s sample_rate=%d encoding=%s channels=%d "
            "language=%s task=%s", self.session_id, _peer(self.connection),
            self.params.sample_rate, self.params.encoding, self.params.channels,
            self.params.language or self.ctx.options.language or "auto", self.params.task,
        )
        self.ctx.on_session_started()
        self.dispatch(self.session.start())
        try:
            async with asyncio.TaskGroup() as group:
                sender = group.create_task(self._send_loop())
                receiver = self._receiver = group.create_task(self._receive_loop())
                await self._done.wait()
                receiver.cancel()
                self._outbox.put_nowait(None)
                await sender
        except* ConnectionClosed:
            pass
        except* TimeoutError:
            # The client stopped reading: drop it rather than buffer without bound. Its
            # socket is full, so not even a close frame would reach it: cut it.
            self._fatal = SessionTimeout("client did not read captions in time")
            self.connection.transport.abort()
        finally:
            self.ctx.scheduler.drop_owner(self.session_id)
            self.ctx.sessions.pop(self.session_id, None)
            if self.params.channel is not None:
                self.ctx.channels.detach_speaker(self.params.channel, self.session_id,
                                                 self.session.duration)
            self._log_end()
        if self._fatal is not None:
            await self._close(self._fatal.close_code or 1011, self._fatal.message[:120])
        elif self.session.finished and self._going_away:
            await self._close(1001, "server shutting down")
        elif self.session.finished:
            await self._close(1000, "end of stream")

    async def _close(self, code: int, reason: str) -> None:
        """Close; a peer that reads nothing, not even our close frame, is cut off."""
        try:
            async with asyncio.timeout(self.ctx.options.shutdown.close_timeout_s):
                await self.connection.close(code, reason)
        except TimeoutError:
            self.connection.transport.abort()
        except ConnectionClosed:
            pass

    async def wait_closed(self) -> None:
        """Until the connection is closed (the shutdown drain waits on this)."""
        await self.connection.wait_closed()

    def go_away(self) -> None:
        """Server shutdown: read no more, finalize as at eos, then close 1001 (going away)."""
        self._going_away = True
        if self._receiver is not None:
            self._receiver.cancel()
        if not self._eos and not self.session.finished:
            self._end_of_stream()

    async def _send_loop(self) -> None:
        while True:
            event = await self._outbox.get()
            if event is None:
                return
            # asyncio.timeout, not wait_for: on 3.11, wait_for loses a cancellation that
            # arrives as its awaitable completes, and a busy peer makes that the usual case.
            async with asyncio.timeout(self.ctx.options.send_timeout_s):
                await self.connection.send(event.to_json())
            if self._outbox.qsize() <= MAX_UNSENT_EVENTS // 2:
                self._room.set()

    async def _receive_loop(self) -> None:
        options = self.ctx.options
        try:
            while True:
                # Back-pressure: a client that does not read its events is not read either,
                # until its sends stall and send_timeout_s lets it go.
                await self._room.wait()
                try:
                    async with asyncio.timeout(options.idle_timeout_s):
                        message = await self.connection.recv()
                except TimeoutError:
                    raise SessionTimeout(
                        f"no audio or keepalive for {options.idle_timeout_s:.0f} s"
                    ) from None
                if self._done.is_set():
                    return  # `end` (or a fatal error) is out: nothing more is said
                if isinstance(message, bytes):
                    if self._eos:
                        self.dispatch(self.session.error(
                            BadRequest("audio after eos is ignored")))
                        continue
                    self._audio(message)
                else:
                    self._control(message)
        except ConnectionClosed:
            # The client went away: nothing more will arrive, decode nothing more.
            self._done.set()
            raise
        except CaptioncastError as error:
            self._fail(error)

    def _audio(self, frame: bytes) -> None:
        if len(frame) > self.ctx.options.max_frame_bytes:
            raise TooLarge(
                f"binary frame of {len(frame)} bytes is over the maximum of "
                f"{self.ctx.options.max_frame_bytes}"
            )
        if len(frame) % self.params.bytes_per_frame:
            self._feed(frame)  # not whole samples: the converter reports it and drops it
            return
        batch = self._pending.add(frame)
        if batch is not None:
            self._feed(batch)

    def _feed(self, pcm: bytes) -> None:
        try:
            audio = self.converter.convert(pcm)
        except CaptioncastError as error:
            self.dispatch(self.session.error(error))
            return
        self.dispatch(self.session.feed(audio))
        self._arrivals.add(self.session.position, time.monotonic())
        self.ctx.on_audio(len(audio) / 16000)

    def _feed_pending(self) -> None:
        pending = self._pending.take()
        if pending:
            self._feed(pending)

    def _control(self, text: str) -> None:
        try:
            kind = parse_control(text)
        except CaptioncastError as error:
            self.dispatch(self.session.error(error))
            return
        if kind == "flush" and not self._eos:
            self._feed_pending()
            self.dispatch(self.session.flush())
        elif kind == "eos" and not self._eos:
            self._end_of_stream()

    def _end_of_stream(self) -> None:
        self._eos = True
        self._feed_pending()
        tail = self.converter.drain()
        if len(tail):
            self.dispatch(self.session.feed(tail))
        self._arrivals.add(self.session.position, time.monotonic())
        self.dispatch(self.session.eos())

    def _fail(self, error: CaptioncastError) -> None:
        self._fatal = error
        self.dispatch(self.session.error(error))
        self._done.set()

    def _log_end(self) -> None:
        latencies = sorted(self._final_latencies)
        p50 = statistics.median(latencies) if latencies else 0.0
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else 0.0
        log.info(
            "event=session_end session=%s duration_s=%.1f audio_s=%.1f utterances=%d "
            "partials=%d final_latency_p50_s=%.3f final_latency_p95_s=%.3f reason=%s",
            self.session_id, time.monotonic() - self.started, self.session.duration,
            self.session.finals_sent, self.session.partials_sent, p50, p95,
            "shutdown" if self._going_away
            else "eos" if self.session.finished
            else (self._fatal.code if self._fatal else "closed"),
        )


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


async def handle_stream(connection: ServerConnection, ctx: ServerContext) -> None:
    try:
        params = parse_stream_params(query_of(connection))
        check_model_support(params, ctx)
        ctx.admit()
        handler = StreamHandler(connection, params, ctx)
        if params.channel is not None:
            ctx.channels.attach_speaker(params.channel, handler.session_id)
    except CaptioncastError as error:
        log.info("event=session_refused peer=%s code=%s message=%r", _peer(connection),
                 error.code, error.message)
        ctx.on_refused(error.code)
        await reject(connection, error)
        return
    await handler.run()
