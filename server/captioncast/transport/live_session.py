"""A stream's life in the server, which can outlast the WebSocket that started it.

A `LiveSession` owns the caption core, its decodes in the scheduler, its channel
publishing and the log of its events. Connections (`StreamHandler`s) attach to it: the
first one opens it; when one drops without `eos`, the session keeps decoding what it
already received and logs what it says, for `resume_window_s`; a reconnect with
`resume=ID&since=SEQ` attaches again and is replayed what it missed (PROTOCOL.md,
"Resuming"). The session id is a 96-bit secret: knowing it is the right to resume.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import functools
import logging
import statistics
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from captioncast.core.audio import MODEL_SAMPLE_RATE, PcmConverter
from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.params import StreamParams
from captioncast.core.policy import Action, Cancel, CaptionSession, SessionConfig
from captioncast.core.replay import EventLog
from captioncast.errors import BadRequest, CaptioncastError, Overloaded, SessionTimeout
from captioncast.protocol import codes
from captioncast.protocol.events import Error, Event, Final, Partial, Ready
from captioncast.transport.coalesce import FrameCoalescer

if TYPE_CHECKING:
    from captioncast.transport.server import ServerContext

log = logging.getLogger("captioncast.stream")

LATENCY_SAMPLES = 1000  # the session-end log line's percentiles: the recent ones suffice
TAKEN_OVER = (codes.POLICY, "this session was resumed on another connection")


class Link(Protocol):
    """The connection attached to a session (transport/stream.py's StreamHandler)."""

    def send(self, event: Event) -> None: ...

    def finish(self, code: int, reason: str) -> None:
        """Send what is queued, then close with this code."""

    def take_over(self) -> None:
        """Another connection resumed the session: close this one now."""

    async def wait_closed(self) -> None:
        """Until the connection is closed."""


class ArrivalClock:
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


def _resume_key(params: StreamParams) -> StreamParams:
    """What a resuming connection must repeat: everything but resume and since."""
    return dataclasses.replace(params, resume=None, since=0)


class LiveSession:
    """One audio stream from its first connection to its `end`, across reconnects."""

    def __init__(self, session_id: str, params: StreamParams, ctx: ServerContext) -> None:
        options = ctx.options
        self.session_id = session_id
        self.params = params
        self.ctx = ctx
        language = params.language or options.language
        self.core = CaptionSession(
            SessionConfig(
                session_id=session_id,
                model=ctx.model_name,
                language=None if language in (None, "auto") else language,
                task=params.task,
                interim=params.interim,
                words=params.words,
                prompt=params.prompt,
                resume_until=int(options.resume_window_s),
            ),
            options.policy,
        )
        self.converter = PcmConverter(params)
        # Tiny frames are batched before conversion (transport/coalesce.py); what it holds
        # counts as received, and it outlives a dropped connection with the session.
        self._pending = FrameCoalescer(params.sample_rate * params.bytes_per_frame)
        self.events = EventLog(options.replay_events)
        self.samples_received = 0  # client samples (per channel) taken, at its own rate
        self.link: Link | None = None
        self._last_link: Link | None = None
        self.over = False
        self._over = asyncio.Event()
        self.reason = ""
        self.connections = 0
        self._inflight: dict[int, asyncio.Future[DecodeResult]] = {}
        self._arrivals = ArrivalClock()
        self._final_latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._stable_counted = (0, 0)  # core counters already reported to the metrics
        self._expiry: asyncio.TimerHandle | None = None
        self.detached_at = 0.0
        self._limit: asyncio.TimerHandle | None = None
        self._eos = False
        self._close_reason = (codes.NORMAL, "end of stream")
        self.started = time.monotonic()

    # -- life -------------------------------------------------------------------------

    def open(self) -> None:
        """Register the new session and say `ready` (into the log, for the first link)."""
        ctx = self.ctx
        if self.params.channel is not None:
            ctx.channels.attach_speaker(self.params.channel, self.session_id)
        ctx.sessions[self.session_id] = self
        ctx.on_session_started()
        if ctx.options.max_session_s:
            self._limit = asyncio.get_running_loop().call_later(
                ctx.options.max_session_s, self._limit_reached)
        self.dispatch(self.core.start())

    def attach(self, link: Link, since: int | None, peer: str) -> list[Event]:
        """Attach a connection; returns what it must be sent before live events.

        A new session's first connection gets the logged `ready`; a resumed one gets a
        fresh `ready` with `audio_received`, then every event after `since`. A connection
        still attached (half-open: its client already gave up on it) is closed.
        """
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        previous, self.link = self.link, link
        self._last_link = link
        self.connections += 1
        if since is None:
            log.info(
                "event=session_start session=%s peer=%s sample_rate=%d encoding=%s "
                "channels=%d language=%s task=%s channel=%s", self.session_id, peer,
                self.params.sample_rate, self.params.encoding, self.params.channels,
                self.params.language or self.ctx.options.language or "auto", self.params.task,
                self.params.channel or "-",
            )
            return [self.core.ready(1)]
        if previous is not None:
            previous.take_over()
        replay = self.events.replay(since)
        if not self.events.complete_after(since):
            log.warning("event=replay_incomplete session=%s since=%d first_held=%d",
                        self.session_id, since, self.events.first_held)
        received = self.samples_received / self.params.sample_rate
        log.info("event=session_resumed session=%s peer=%s since=%d replayed=%d "
                 "audio_received_s=%.3f took_over=%s", self.session_id, peer, since,
                 len(replay), received, previous is not None)
        ready: Event = self.core.ready(1, audio_received=received)
        return [ready, *replay]

    def detach(self, link: Link, why: str) -> None:
        """A connection ended; unless it was replaced or the session is over, wait for a resume."""
        if self.link is not link:
            return  # taken over: the new connection owns the session
        self.link = None
        if self.over:
            if why == "closed" or not self._eos:
                self._forget()  # `end` went out and the connection closed cleanly
            else:
                self._keep_for_replay()  # `end` may never have reached the client
            return
        window = self.ctx.options.resume_window_s
        if window <= 0 or not self.samples_received:
            # Nobody can resume, or there is nothing to resume (no audio yet): a client
            # that comes back starts a new stream just as well.
            self._end(why)
            return
        log.info("event=session_detached session=%s reason=%s resume_window_s=%.0f "
                 "audio_s=%.1f", self.session_id, why, window, self.core.duration)
        self.detached_at = time.monotonic()
        self._expiry = asyncio.get_running_loop().call_later(window, self._expired)

    @property
    def awaiting_resume(self) -> bool:
        return self.link is None and self._expiry is not None and not self.over

    def expire_now(self) -> None:
        """Give up waiting for a resume (the server needs the room)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expired()

    def resumable_by(self, params: StreamParams) -> None:
        """Raise BadRequest unless a connection with `params` may resume this session."""
        if _resume_key(params) != _resume_key(self.params):
            raise BadRequest("resume with the same stream parameters as the original "
                             "connection (only resume and since may differ)")
        if params.since > self.events.last_seq:
            raise BadRequest(f"since={params.since} is after the last event of this session "
                             f"({self.events.last_seq})")

    def _expired(self) -> None:
        self._expiry = None
        log.info("event=session_expired session=%s", self.session_id)
        self.reason = "expired"
        # Finalize rather than drop: channel viewers still get the last words' final.
        self._finalize()

    def _limit_reached(self) -> None:
        self._limit = None
        if self.over or self.core.ending:
            return
        limit = self.ctx.options.max_session_s or 0
        self._close_reason = (codes.NORMAL, f"session reached the server's limit of {limit:.0f} s")
        self.reason = "max_session"
        self.dispatch(self.core.error(SessionTimeout(
            f"this session reached the server's limit of {limit:.0f} s: finalizing; "
            "start a new stream to go on")))
        self._finalize()

    def finalize(self, code: int = codes.NORMAL, reason: str = "end of stream") -> None:
        """Finish now as if `eos` had arrived: every final, then `end`, then close."""
        if self.over:
            return
        self._close_reason = (code, reason)
        self._finalize()

    def go_away(self) -> None:
        """Server shutdown: finalize as at eos, then close 1001 (going away).

        A client that reconnects is refused (draining), so it starts a new stream
        elsewhere from the end of its last final.
        """
        self.reason = self.reason or "shutdown"
        self.finalize(codes.GOING_AWAY, "server shutting down")

    async def wait_closed(self) -> None:
        """Until the session is over and its last connection closed."""
        await self._over.wait()
        if self._last_link is not None:
            await self._last_link.wait_closed()

    def _finalize(self) -> None:
        if self.over or self.core.ending:
            return
        self._feed_pending()
        tail = self.converter.drain()
        if len(tail):
            self.dispatch(self.core.feed(tail))
        self._arrivals.add(self.core.position, time.monotonic())
        self.dispatch(self.core.eos())

    def fail(self, error: CaptioncastError) -> None:
        """A fatal error: report it, close with its code, and end (no resume)."""
        if self.over:
            return
        self.dispatch(self.core.error(error))
        link = self.link
        self._end(error.code)
        if link is not None:
            link.finish(error.close_code or codes.INTERNAL, error.message[:120])

    def _end(self, reason: str) -> None:
        """Release everything the session holds; events after this are dropped."""
        if self.over:
            return
        self.over = True
        self._over.set()
        self.reason = self.reason or reason
        for timer in (self._expiry, self._limit):
            if timer is not None:
                timer.cancel()
        self.ctx.scheduler.drop_owner(self.session_id)
        if self.params.channel is not None:
            self.ctx.channels.detach_speaker(self.params.channel, self.session_id,
                                             self.core.duration)
        self._log_end()
        if self.link is None and self._eos and self.core.finished:
            self._keep_for_replay()
        elif self.link is None:
            self._forget()
        # else: the connection sends `end` and closes; detach() decides then.

    def _keep_for_replay(self) -> None:
        """The client sent eos and lost its connection before it read `end`: it may resume
        to read the last finals. Keep the log (not the decoding) for the resume window."""
        window = self.ctx.options.resume_window_s
        if window <= 0:
            self._forget()
            return
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(window, self._forget)

    def _forget(self) -> None:
        if self.ctx.sessions.get(self.session_id) is self:
            del self.ctx.sessions[self.session_id]

    # -- input from the attached connection ---------------------------------------------

    def audio(self, frame: bytes) -> None:
        if self.core.ending:
            return  # past the session limit: the rest is not captioned
        if len(frame) % self.params.bytes_per_frame:
            self._feed(frame)  # not whole samples: the converter reports it and drops it
            return
        self.samples_received += len(frame) // self.params.bytes_per_frame
        batch = self._pending.add(frame)
        if batch is not None:
            self._feed(batch)

    def _feed(self, pcm: bytes) -> None:
        try:
            audio = self.converter.convert(pcm)
        except CaptioncastError as error:
            self.dispatch(self.core.error(error))
            return
        self.dispatch(self.core.feed(audio))
        self._arrivals.add(self.core.position, time.monotonic())
        self.ctx.on_audio(len(audio) / MODEL_SAMPLE_RATE)

    def _feed_pending(self) -> None:
        pending = self._pending.take()
        if pending:
            self._feed(pending)

    def control(self, kind: str) -> None:
        if kind == "flush" and not self._eos:
            self._feed_pending()
            self.dispatch(self.core.flush())
        elif kind == "eos" and not self._eos:
            self._eos = True
            self._finalize()

    @property
    def eos_received(self) -> bool:
        return self._eos

    # -- decoding and events ------------------------------------------------------------

    def dispatch(self, actions: list[Action]) -> None:
        if self.over:
            return
        for action in actions:
            if isinstance(action, DecodeRequest):
                future = self.ctx.scheduler.submit(self.session_id, action)
                self._inflight[action.request_id] = future
                future.add_done_callback(functools.partial(self._decoded, action.request_id))
            elif isinstance(action, Cancel):
                self.ctx.scheduler.cancel(self.session_id, action.request_id)
                self._inflight.pop(action.request_id, None)
            else:
                self._publish(action)
        if self.core.finished:
            link = self.link
            self._end(self.reason or "eos")
            if link is not None:
                link.finish(*self._close_reason)

    def _publish(self, event: Event) -> None:
        self.events.add(event)
        self._note_latency(event)
        if self.link is not None and not isinstance(event, Ready):
            self.link.send(event)
        if self.params.channel is not None:
            self.ctx.channels.publish(self.params.channel, event)

    def _decoded(self, request_id: int, future: asyncio.Future[DecodeResult]) -> None:
        self._inflight.pop(request_id, None)
        if future.cancelled() or self.over:
            return
        exc = future.exception()
        if exc is not None:
            self.dispatch(self.core.on_failure(request_id, str(exc) or type(exc).__name__))
        else:
            self.dispatch(self.core.on_result(request_id, future.result()))

    def _note_latency(self, event: Event) -> None:
        if isinstance(event, Final):
            self.ctx.on_final()
            shown, revised = self.core.stable_words_shown, self.core.stable_words_revised
            self.ctx.on_stable_words(shown - self._stable_counted[0],
                                     revised - self._stable_counted[1])
            self._stable_counted = (shown, revised)
            sent = self._arrivals.time_of(int(event.end * MODEL_SAMPLE_RATE))
            if sent is not None:
                latency = time.monotonic() - sent
                self._final_latencies.append(latency)
                self.ctx.on_final_latency(latency)
        elif isinstance(event, Partial):
            sent = self._arrivals.time_of(int(event.end * MODEL_SAMPLE_RATE))
            self.ctx.on_partial(None if sent is None else time.monotonic() - sent)
        elif isinstance(event, Error):
            self.ctx.on_error(event.code)

    def _log_end(self) -> None:
        latencies = sorted(self._final_latencies)
        p50 = statistics.median(latencies) if latencies else 0.0
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else 0.0
        log.info(
            "event=session_end session=%s duration_s=%.1f audio_s=%.1f utterances=%d "
            "partials=%d final_latency_p50_s=%.3f final_latency_p95_s=%.3f connections=%d "
            "loops_caught=%d reason=%s",
            self.session_id, time.monotonic() - self.started, self.core.duration,
            self.core.finals_sent, self.core.partials_sent, p50, p95, self.connections,
            self.core.loops_caught, self.reason,
        )


def find_resumable(ctx: ServerContext, params: StreamParams) -> LiveSession:
    """The live session `params.resume` names, or BadRequest saying what to do instead."""
    assert params.resume is not None
    if ctx.draining:
        raise Overloaded("the server is shutting down; resume on another node")
    live = ctx.sessions.get(params.resume)
    # An expired session is finalizing: audio resent now would be dropped unheard.
    if live is None or live.reason == "expired" or (live.over and not live.core.finished):
        raise BadRequest(
            "unknown or expired session: it ended, its resume window passed, or the server "
            "restarted; start a new stream (without resume) to go on"
        )
    live.resumable_by(params)
    return live
