"""A caption stream as a resource: `async with` it, send audio, `async for` its events.

One `CaptionStream` is one stream of audio, whatever happens to the connection under
it: a dropped connection is resumed (PROTOCOL.md, "Resuming") with the events handed on
exactly once and in order and the audio the server did not get sent again; a session
the server no longer has is restarted from the end of the last final, its numbers and
clock shifted to continue the old ones. As aiomqtt does for MQTT, the reconnecting lives
here, so a program only sends audio and reads typed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from captioncast.protocol.codes import REFUSAL_CLOSE_CODES, ErrorCode
from captioncast.protocol.events import End, Error, Event, Final, Ready
from captioncast_client.access import NO_ACCESS, Access
from captioncast_client.connection import decode, open_connection, read_event, refusal
from captioncast_client.errors import ClientError, ServerRefused, ServerUnreachable
from captioncast_client.resume import EventContinuity, SentAudio, reconnect_backoff

BYTES_PER_SECOND = 32000  # 16 kHz, 16-bit mono: what the clients send
READY_TIMEOUT_S = 30.0
MAX_RESEND_S = 300.0  # audio kept for resending after a drop; more than any resume needs
MAX_BACKLOG_S = 300.0  # while disconnected, send() takes this much audio ahead, then waits
BACKLOG_POLL_S = 0.05
MIN_RECONNECT_S, MAX_RECONNECT_S = 30.0, 300.0  # how long to try to resume, at least/most


class _Dropped(Exception):
    """The connection went away; reconnecting may help."""


class _SessionGone(Exception):
    """The server no longer knows the session: start a new one."""


def _with_params(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


class CaptionStream:
    """Audio to `/v1/stream` (a `stream_url`), events back: `ready` first, `end` last.

    `async with` opens the stream and reads its `ready` (ServerRefused, with the server's
    `error` as `.event`, if it says no; ServerUnreachable if it cannot be reached).
    `send()` takes PCM as the URL declares it (`bytes_per_second` and `frame_bytes` say
    how much audio a byte is, 16 kHz s16le mono by default); `end()` asks for the last
    finals and `end`. Iterating yields every event once, in order, and stops after `end`;
    it raises the ClientError that ended the stream: with `reconnect`, one that could not
    be resumed within `reconnect_for_s` (default: the server's resume window, 30 s to
    5 min). `on_reconnect` hears what the reconnecting does, in words; `on_sent` hears
    (audio seconds, time.monotonic()) when audio is first sent, for latency figures.
    """

    def __init__(
        self,
        url: str,
        *,
        access: Access = NO_ACCESS,
        open_timeout: float = 10.0,
        end_timeout: float = 120.0,
        bytes_per_second: int = BYTES_PER_SECOND,
        frame_bytes: int = 2,
        reconnect: bool = True,
        reconnect_for_s: float | None = None,
        on_reconnect: Callable[[str], None] | None = None,
        on_sent: Callable[[float, float], None] | None = None,
    ) -> None:
        self.url = url
        self.access = access
        self.open_timeout = open_timeout
        self.end_timeout = end_timeout
        self.bps = bytes_per_second
        self.frame_bytes = frame_bytes
        self.reconnect = reconnect
        self.reconnect_for_s = reconnect_for_s
        self.on_reconnect = on_reconnect or (lambda message: None)
        self.on_sent = on_sent
        self.ready: Ready | None = None  # the first connection's
        self.resumes: list[dict[str, object]] = []  # one per reconnect
        self.received_at = 0.0  # time.monotonic() at receipt of the event last yielded
        self.audio = SentAudio(max_held=int(MAX_RESEND_S * self.bps))
        self._continuity = EventContinuity()
        self._more = asyncio.Event()  # new audio, or end()
        self._source_done = False
        self._eos_sent = False
        # The server's `overloaded` error for this session mid-stream: its `end` and close
        # that follow are a refusal, not a server going away that another connection fixes.
        self._refused: Error | None = None
        self._over = False  # `end` received, or the stream failed or was closed
        self._session: str | None = None
        self._resume_until = 0.0
        # Unbounded: events are small, and a reader that stops reading should not stall
        # the connection (the server would cut it as a slow client).
        self._events: asyncio.Queue[tuple[Event, float] | None] = asyncio.Queue()
        self._failure: BaseException | None = None
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    # -- the resource -----------------------------------------------------------------------

    async def __aenter__(self) -> CaptionStream:
        connection = await self._open(self.url)
        try:
            first = await read_event(connection, READY_TIMEOUT_S)
        except BaseException:
            await connection.close()
            raise
        self._emit(first)
        if not isinstance(first, Ready):
            await connection.close()
            if isinstance(first, Error):
                raise refusal(first)
            raise ServerRefused(f"server sent {first.type} before ready")
        self.ready = first
        self._session = first.session
        self._resume_until = float(first.resume_until or 0)
        self._continuity.last_seq = self._continuity.out_seq = first.seq
        self._task = asyncio.create_task(self._connections(connection))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._over = True
        self._more.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def send(self, pcm: bytes) -> None:
        """Queue audio; it leaves at once, or after a reconnect. Waits if far behind."""
        if self._source_done:
            raise ClientError("audio sent after end()")
        while self.audio.backlog >= MAX_BACKLOG_S * self.bps and not self._over:
            await asyncio.sleep(BACKLOG_POLL_S)  # disconnected for long: hold the source
        if self._over:
            raise self._failure if isinstance(self._failure, ClientError) else \
                ClientError("the stream is over")
        self.audio.add(pcm)
        self._more.set()

    async def end(self) -> None:
        """No more audio: once all of it is sent, `eos`; the last finals and `end` follow."""
        self._source_done = True
        self._more.set()

    def abort(self, error: BaseException) -> None:
        """End the stream because its source failed: iterating raises `error`."""
        self._fail(error)
        if self._task is not None:
            self._task.cancel()

    def __aiter__(self) -> CaptionStream:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        item = await self._events.get()
        if item is None:
            self._finished = True
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        event, self.received_at = item
        return event

    def _emit(self, event: Event) -> None:
        self._events.put_nowait((event, time.monotonic()))

    def _fail(self, error: BaseException) -> None:
        if self._failure is None and not self._finished:
            self._failure = error

    # -- connections ------------------------------------------------------------------------

    async def _connections(self, connection: ClientConnection) -> None:
        try:
            while True:
                try:
                    await self._serve(connection)
                    return
                except _Dropped as dropped:
                    if not self.reconnect:
                        raise ServerRefused(f"server closed the stream: {dropped}") from None
                    connection = await self._reconnect(str(dropped))
        except asyncio.CancelledError:
            pass
        except Exception as error:  # ClientError, or a server that breaks the protocol
            self._fail(error)
        finally:
            self._over = True
            self._events.put_nowait(None)

    async def _open(self, url: str) -> ClientConnection:
        return await open_connection(url, self.access, self.open_timeout)

    async def _reconnect(self, why: str) -> ClientConnection:
        """Resume the session, or start a new one when it is gone, until the deadline."""
        budget = self.reconnect_for_s
        if budget is None:
            budget = min(MAX_RECONNECT_S, max(MIN_RECONNECT_S, self._resume_until))
        deadline = time.monotonic() + budget
        backoff = reconnect_backoff()
        self.on_reconnect(f"connection lost ({why}); reconnecting")
        last_error = why
        while True:
            delay = backoff.next_delay()
            if time.monotonic() + delay > deadline:
                raise ServerUnreachable(
                    f"lost the connection to the server and could not resume within "
                    f"{budget:.0f} s (last error: {last_error})")
            await asyncio.sleep(delay)
            try:
                return await self._resume()
            except ServerUnreachable as error:
                last_error = str(error)
            except _SessionGone as gone:
                self.on_reconnect(f"{gone}; starting a new stream")
                try:
                    return await self._restart()
                except ServerUnreachable as error:
                    last_error = str(error)
            except _Dropped as dropped:
                last_error = str(dropped)

    async def _resume(self) -> ClientConnection:
        if not self._session or self._resume_until <= 0:
            raise _SessionGone("the server keeps no session to resume")
        url = _with_params(self.url, resume=self._session, since=self._continuity.last_seq)
        connection = await self._open(url)
        ready = await self._ready_or_refusal(connection)
        received = ready.audio_received or 0.0
        sample_rate = self.bps // self.frame_bytes
        offset = round(received * sample_rate) * self.frame_bytes
        used = self.audio.rewind(offset)
        if used != offset:
            self.on_reconnect(f"{(offset - used) / self.bps:.1f} s of audio could not be "
                              "resent (no longer held)")
        self.resumes.append({"at": time.monotonic(), "since": self._continuity.last_seq,
                             "audio_received": received, "new_session": False})
        self.on_reconnect(f"resumed at {received:.1f} s of audio")
        return connection

    async def _restart(self) -> ClientConnection:
        connection = await self._open(self.url)
        ready = await self._ready_or_refusal(connection)
        restart_at = self._continuity.last_final_end
        used = self.audio.rewind(round(restart_at * self.bps / self.frame_bytes)
                                 * self.frame_bytes)
        restart_at = used / self.bps
        self._session = ready.session
        self._resume_until = float(ready.resume_until or 0)
        self._continuity.new_session(restart_at)
        self.resumes.append({"at": time.monotonic(), "since": self._continuity.out_seq,
                             "audio_received": restart_at, "new_session": True})
        self.on_reconnect(f"new stream from {restart_at:.1f} s of audio")
        return connection

    async def _ready_or_refusal(self, connection: ClientConnection) -> Ready:
        try:
            event = await read_event(connection, READY_TIMEOUT_S)
        except ClientError as exc:  # closed or silent before ready: try again
            raise _Dropped(str(exc)) from None
        if isinstance(event, Ready):
            return event
        await connection.close()
        if isinstance(event, Error):
            if event.code == ErrorCode.BAD_REQUEST \
                    and "unknown or expired session" in event.message:
                raise _SessionGone("the server no longer has the session")
            if event.code in (ErrorCode.OVERLOADED, ErrorCode.INTERNAL):
                raise ServerUnreachable(f"{event.code}: {event.message}")
            raise refusal(event)
        raise ServerRefused(f"server sent {event.type} before ready")

    async def _serve(self, connection: ClientConnection) -> None:
        """Send audio and read events on one connection until `end`; _Dropped if it breaks."""
        async with connection:
            receiver = asyncio.create_task(self._receive(connection))
            sender = asyncio.create_task(self._send(connection))
            try:
                done, _ = await asyncio.wait({receiver, sender},
                                             return_when=asyncio.FIRST_COMPLETED)
                if sender in done and sender.exception() is None:
                    # everything sent, eos included: wait for the rest of the captions
                    await asyncio.wait_for(asyncio.shield(receiver), self.end_timeout)
                for task in (receiver, sender):
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code in REFUSAL_CLOSE_CODES:
                    raise ServerRefused(
                        f"server closed the stream: {exc.rcvd.reason or exc}") from exc
                raise _Dropped(str(exc) or "connection closed") from exc
            except TimeoutError as exc:
                raise ClientError("the server did not finish the stream in time") from exc
            finally:
                for task in (receiver, sender):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                            await task
        if not self._over:
            raise _Dropped("the server closed the connection before end")

    async def _receive(self, connection: ClientConnection) -> None:
        async for message in connection:
            if not isinstance(message, str):
                continue
            parsed = decode(message)
            event = self._continuity.accept(parsed) if parsed is not None else None
            if event is None:
                continue
            if isinstance(event, Error) and event.code == ErrorCode.OVERLOADED:
                self._refused = event
            if isinstance(event, End) and not self._eos_sent and self._refused is None:
                # The server ended a stream we had not ended: it is shutting down (close
                # 1001 follows). Our audio goes on, on this server or another one.
                return
            if isinstance(event, Final):
                self.audio.confirm(round(event.end * self.bps / self.frame_bytes)
                                   * self.frame_bytes)
            self._emit(event)
            if isinstance(event, End):
                self._over = True
                if self._refused is not None:
                    # past capacity: what was said is captioned, the rest is refused
                    raise ServerRefused(f"{self._refused.code}: {self._refused.message}")
                return

    async def _send(self, connection: ClientConnection) -> None:
        while not self._over:
            chunk = self.audio.next_chunk()
            if chunk is None:
                if self._source_done:
                    await connection.send(json.dumps({"type": "eos"}))
                    self._eos_sent = True
                    return
                self._more.clear()
                await self._more.wait()
                continue
            await connection.send(chunk)
            first_time = self.audio.sent >= self.audio.sent_ever
            self.audio.mark_sent(len(chunk))
            if first_time and self.on_sent is not None:
                self.on_sent(self.audio.sent / self.bps, time.monotonic())
