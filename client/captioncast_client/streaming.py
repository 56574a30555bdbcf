"""Send PCM chunks to `/v1/stream`, paced like a live source, and hand back every event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from captioncast_client.access import (
    NO_ACCESS,
    TLS_HINT,
    UNAUTHORIZED_HINT,
    UNREACHABLE_HINT,
    Access,
    explain_refusal,
    websocket_base,
)
from captioncast_client.resume import Backoff, EventContinuity, SentAudio

BYTES_PER_SECOND = 32000  # 16 kHz, 16-bit mono: what the clients send
PING_INTERVAL_S = 10.0
MAX_RESEND_S = 300.0  # audio kept for resending after a drop; more than any resume needs
MAX_BACKLOG_S = 300.0  # while disconnected, the source is read this far ahead, then held
MIN_RECONNECT_S, MAX_RECONNECT_S = 30.0, 300.0  # how long to try to resume, at least/most
# Close codes that say "do not come back": policy, too large, unsupported, unauthorized.
REFUSAL_CODES = frozenset({1003, 1008, 1009, 4001})
Event = dict[str, Any]


class ClientError(Exception):
    """Something a user can act on; `exit_code` follows the CLI's conventions."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result: StreamResult | None = None  # what a stream got before it failed


class ServerUnreachable(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class ServerRefused(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=3)


@dataclass
class StreamResult:
    events: list[Event] = field(default_factory=list)
    sent_at: list[tuple[float, float]] = field(default_factory=list)  # (audio s, wall clock)
    resumes: list[dict[str, Any]] = field(default_factory=list)  # one per reconnect

    @property
    def finals(self) -> list[Event]:
        return [e for e in self.events if e["type"] == "final"]

    @property
    def errors(self) -> list[Event]:
        return [e for e in self.events if e["type"] == "error"]

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f["text"])


def stream_url(server: str, **params: Any) -> str:
    query = {k: (str(v).lower() if isinstance(v, bool) else v)
             for k, v in params.items() if v not in (None, "")}
    base = websocket_base(server)
    return f"{base}/v1/stream" + (f"?{urlencode(query)}" if query else "")


def _close_code(exc: ConnectionClosed) -> int | None:
    return exc.rcvd.code if exc.rcvd is not None else None


async def open_connection(url: str, access: Access = NO_ACCESS,
                          open_timeout: float = 10.0) -> ClientConnection:
    """Connect to a WebSocket route, with the token and TLS settings of `access`.

    ServerUnreachable is what reconnecting may cure (network, TLS, a 5xx from a proxy
    while the server restarts); ServerRefused is what it cannot.
    """
    where = url.split("/v1/")[0]
    try:
        # Pings find a half-open connection (a dead Wi-Fi) in seconds, not minutes.
        return await connect(url, open_timeout=open_timeout, max_size=2**22,
                             additional_headers=access.headers(), ssl=access.ssl_for(url),
                             ping_interval=PING_INTERVAL_S, ping_timeout=PING_INTERVAL_S)
    except ssl.SSLCertVerificationError as exc:
        raise ServerUnreachable(f"cannot verify the certificate of {where}: "
                                f"{exc.verify_message}; {TLS_HINT}") from exc
    except ssl.SSLError as exc:
        raise ServerUnreachable(f"TLS with {where} failed ({exc.reason}): is it a wss:// "
                                "server, and is the address ws:// for a plain one?") from exc
    except (OSError, TimeoutError) as exc:
        raise ServerUnreachable(f"cannot reach captioncast at {where}: "
                                f"{exc or 'no answer in time'}; {UNREACHABLE_HINT}") from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        message = f"server refused the connection: {explain_refusal(status)}"
        raise (ServerUnreachable(message) if status >= 500 else ServerRefused(message)) from exc
    except InvalidURI as exc:
        raise ClientError(f"bad server address: {exc}") from exc
    except InvalidHandshake as exc:
        raise ServerUnreachable(f"{where} did not answer as a captioncast server ({exc}); "
                                "for a TLS server use wss://") from exc


def refusal(event: Event) -> ServerRefused:
    """The error to raise for a fatal `error` event that opened the stream."""
    message = f"server refused the stream: {event.get('code')}: {event.get('message')}"
    if event.get("code") == "unauthorized":
        message += f" ({UNAUTHORIZED_HINT})"
    return ServerRefused(message)


async def _chunks(source: Iterable[bytes] | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if hasattr(source, "__aiter__"):
        async for chunk in source:
            yield chunk
    else:
        for chunk in source:
            yield chunk
            await asyncio.sleep(0)


def _with_params(url: str, **params: Any) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Dropped(Exception):
    """The connection went away; reconnecting may help."""


class _SessionGone(Exception):
    """The server no longer knows the session: start a new one."""


async def stream(
    url: str,
    source: Iterable[bytes] | AsyncIterator[bytes],
    *,
    realtime: bool = True,
    on_event: Callable[[Event], None] | None = None,
    open_timeout: float = 10.0,
    end_timeout: float = 120.0,
    bytes_per_second: int = BYTES_PER_SECOND,
    frame_bytes: int = 2,
    speed: float = 1.0,
    reconnect: bool = True,
    reconnect_for_s: float | None = None,
    on_reconnect: Callable[[str], None] | None = None,
    keep_partials: bool = True,
    access: Access = NO_ACCESS,
) -> StreamResult:
    """Stream audio, then `eos`; return every event up to `end`.

    With `realtime`, chunks leave at the pace of the audio they hold
    (`bytes_per_second` of it, 16 kHz s16le by default), as a live source sends them,
    or `speed` times faster (benchmarks). With `reconnect`, a dropped connection is
    resumed (PROTOCOL.md, "Resuming"): the events are handed on exactly once and in
    order, and the audio the server did not get is sent again; after `reconnect_for_s`
    (default: the server's resume window, 30 s to 5 min) without success the stream
    gives up with ServerUnreachable, whose `result` holds what was received.
    Without `keep_partials`, partials go to `on_event` only and no send times are
    kept, so that a session of hours keeps only its finals. `access` carries the token
    and TLS settings.
    """
    settings = _Settings(realtime, open_timeout, end_timeout, bytes_per_second, frame_bytes,
                         speed, reconnect, reconnect_for_s, keep_partials, access)
    return await _Run(url, source, settings, on_event, on_reconnect).run()


@dataclass(frozen=True)
class _Settings:
    """stream()'s keyword arguments, as documented there."""

    realtime: bool
    open_timeout: float
    end_timeout: float
    bytes_per_second: int
    frame_bytes: int
    speed: float
    reconnect: bool
    reconnect_for_s: float | None
    keep_partials: bool
    access: Access


class _Run:
    """One `stream()` call: a reader of the source, and one connection after another."""

    def __init__(self, url: str, source: Iterable[bytes] | AsyncIterator[bytes],
                 settings: _Settings, on_event: Callable[[Event], None] | None,
                 on_reconnect: Callable[[str], None] | None) -> None:
        self.url = url
        self.source = source
        self.settings = settings
        self.bps = settings.bytes_per_second
        self.frame_bytes = settings.frame_bytes
        self.on_event = on_event
        self.on_reconnect = on_reconnect or (lambda message: None)
        self.result = StreamResult()
        self.audio = SentAudio(max_held=int(MAX_RESEND_S * self.bps))
        self.events = EventContinuity()
        self.more = asyncio.Event()  # new audio read, or the source ended
        self.source_done = False
        self.session: str | None = None
        self.resume_until = 0.0
        self.ended = False
        self.eos_sent = False

    # -- the source -----------------------------------------------------------------------

    async def _read_source(self) -> None:
        started = time.monotonic()
        async for chunk in _chunks(self.source):
            if self.ended:
                return
            if self.settings.realtime:
                # a live source sends a chunk once its audio has been captured
                due = started + (self.audio.end + len(chunk)) / (self.bps * self.settings.speed)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            while self.audio.backlog >= MAX_BACKLOG_S * self.bps and not self.ended:
                await asyncio.sleep(0.05)  # disconnected for long: hold the source back
            self.audio.add(chunk)
            self.more.set()
        self.source_done = True
        self.more.set()

    # -- connections ------------------------------------------------------------------------

    async def run(self) -> StreamResult:
        connection = await self._open(self.url)
        reader = asyncio.create_task(self._read_source())
        try:
            await self._first_connection(connection)
            while True:
                try:
                    await self._serve(connection)
                    return self.result
                except _Dropped as dropped:
                    if not self.settings.reconnect:
                        raise ServerRefused(f"server closed the stream: {dropped}") from None
                    connection = await self._reconnect(str(dropped))
        except ClientError as error:
            error.result = self.result
            raise
        finally:
            self.ended = True
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _open(self, url: str) -> ClientConnection:
        return await open_connection(url, self.settings.access, self.settings.open_timeout)

    async def _first_connection(self, connection: ClientConnection) -> None:
        first = await _read_event(connection, 30.0)
        first["received_at"] = time.monotonic()
        self.result.events.append(first)
        if self.on_event:
            self.on_event(first)
        if first["type"] == "error":
            await connection.close()
            raise refusal(first)
        self.session = first.get("session")
        self.resume_until = float(first.get("resume_until") or 0)
        self.events.last_seq = self.events.out_seq = int(first.get("seq", 1))

    async def _reconnect(self, why: str) -> ClientConnection:
        """Resume the session, or start a new one when it is gone, until the deadline."""
        budget = self.settings.reconnect_for_s
        if budget is None:
            budget = min(MAX_RECONNECT_S, max(MIN_RECONNECT_S, self.resume_until))
        deadline = time.monotonic() + budget
        backoff = Backoff()
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
        if not self.session or self.resume_until <= 0:
            raise _SessionGone("the server keeps no session to resume")
        url = _with_params(self.url, resume=self.session, since=self.events.last_seq)
        connection = await self._open(url)
        ready = await self._ready_or_refusal(connection)
        received = float(ready.get("audio_received", 0.0))
        sample_rate = self.bps // self.frame_bytes
        offset = round(received * sample_rate) * self.frame_bytes
        used = self.audio.rewind(offset)
        if used != offset:
            self.on_reconnect(f"{(offset - used) / self.bps:.1f} s of audio could not be "
                              "resent (no longer held)")
        self.result.resumes.append({"at": time.monotonic(), "since": self.events.last_seq,
                                    "audio_received": received, "new_session": False})
        self.on_reconnect(f"resumed at {received:.1f} s of audio")
        return connection

    async def _restart(self) -> ClientConnection:
        connection = await self._open(self.url)
        ready = await self._ready_or_refusal(connection)
        restart_at = self.events.last_final_end
        used = self.audio.rewind(round(restart_at * self.bps / self.frame_bytes)
                                 * self.frame_bytes)
        restart_at = used / self.bps
        self.session = ready.get("session")
        self.resume_until = float(ready.get("resume_until") or 0)
        self.events.new_session(restart_at)
        self.result.resumes.append({"at": time.monotonic(), "since": self.events.out_seq,
                                    "audio_received": restart_at, "new_session": True})
        self.on_reconnect(f"new stream from {restart_at:.1f} s of audio")
        return connection

    async def _ready_or_refusal(self, connection: ClientConnection) -> Event:
        try:
            event = await _read_event(connection, 30.0)
        except ClientError as exc:  # closed or silent before ready: try again
            raise _Dropped(str(exc)) from None
        if event["type"] == "ready":
            return event
        await connection.close()
        if event["type"] == "error" and event.get("code") == "bad_request" \
                and "unknown or expired session" in event.get("message", ""):
            raise _SessionGone("the server no longer has the session")
        if event["type"] == "error" and event.get("code") in ("overloaded", "internal"):
            raise ServerUnreachable(f"{event['code']}: {event['message']}")
        raise refusal(event)

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
                    await asyncio.wait_for(asyncio.shield(receiver), self.settings.end_timeout)
                for task in (receiver, sender):
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            except ConnectionClosed as exc:
                if _close_code(exc) in REFUSAL_CODES:
                    reason = exc.rcvd.reason if exc.rcvd else ""
                    raise ServerRefused(f"server closed the stream: {reason or exc}") from exc
                raise _Dropped(str(exc) or "connection closed") from exc
            except TimeoutError as exc:
                raise ClientError("the server did not finish the stream in time") from exc
            finally:
                for task in (receiver, sender):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                            await task
        if not self.ended:
            raise _Dropped("the server closed the connection before end")

    async def _receive(self, connection: ClientConnection) -> None:
        async for message in connection:
            if not isinstance(message, str):
                continue
            event = self.events.accept(json.loads(message))
            if event is None:
                continue
            if event["type"] == "end" and not self.eos_sent:
                # The server ended a stream we had not ended: it is shutting down (close
                # 1001 follows). Our audio goes on, on this server or another one.
                return
            event["received_at"] = time.monotonic()
            if self.settings.keep_partials or event["type"] != "partial":
                self.result.events.append(event)
            if event["type"] == "final":
                self.audio.confirm(round(event["end"] * self.bps / self.frame_bytes)
                                   * self.frame_bytes)
            if self.on_event:
                self.on_event(event)
            if event["type"] == "end":
                self.ended = True
                return

    async def _send(self, connection: ClientConnection) -> None:
        while not self.ended:
            chunk = self.audio.next_chunk()
            if chunk is None:
                if self.source_done:
                    await connection.send(json.dumps({"type": "eos"}))
                    self.eos_sent = True
                    return
                self.more.clear()
                await self.more.wait()
                continue
            await connection.send(chunk)
            first_time = self.audio.sent >= self.audio.sent_ever
            self.audio.mark_sent(len(chunk))
            if first_time and self.settings.keep_partials:
                self.result.sent_at.append((self.audio.sent / self.bps, time.monotonic()))


async def _read_event(connection: ClientConnection, timeout: float) -> Event:
    try:
        message = await asyncio.wait_for(connection.recv(), timeout)
    except ConnectionClosed as exc:
        raise ServerRefused(f"server closed the connection: {exc}") from exc
    except TimeoutError as exc:
        raise ClientError("server sent no ready event") from exc
    event: Event = json.loads(message)
    return event
