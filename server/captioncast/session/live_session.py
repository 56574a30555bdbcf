"""A stream's life in the server, which can outlast the WebSocket that started it.

A `LiveSession` owns the caption core (through its SessionDriver), its channel publishing
and the log of its events. Connections (transport/stream.py) attach to it: the first one
opens it; when one drops without `eos`, the session keeps decoding what it already received
and logs what it says, for `resume_window_s`, until a reconnect resumes it
(session/resume.py). Its life is a `State` (session/link.py).

It costs decoding only while it is `speaking`; when it starts speaking from idle the server
decides what it gets (engine/capacity.py): partials and finals, finals only, or an
`overloaded` error, its last finals and close 1013. `multichannel`: session/multichannel.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE, PcmConverter
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.params import Configure, StreamParams
from captioncast.core.policy import Action
from captioncast.core.replay import EventLog
from captioncast.engine.capacity import Decision, SpeechGrace
from captioncast.errors import CaptioncastError, Overloaded, SessionTimeout
from captioncast.protocol import codes
from captioncast.protocol.events import Event, Final, Ready
from captioncast.session.coalesce import FrameCoalescer
from captioncast.session.driver import ScheduledDecodes, SessionDriver
from captioncast.session.link import Link, SessionHost, State
from captioncast.session.resume import check_resumable, replay_for
from captioncast.session.session_log import log_session_end, log_session_start
from captioncast.session.stages import build_stages
from captioncast.session.timer import Timer
from captioncast.telemetry.measures import StreamLatency

log = logging.getLogger("captioncast.stream")


class LiveSession:
    """One audio stream from its first connection to its `end`, across reconnects."""

    def __init__(self, session_id: str, params: StreamParams, ctx: SessionHost,
                 address: str | None = None, token_key: str | None = None,
                 policy: PolicyOptions | None = None) -> None:
        """`policy`: the server's, unless a compatible API's stream sets its own endpointing."""
        options = ctx.options
        self.session_id = session_id
        self.address = address  # where its first connection came from
        self.token_key = token_key
        self.params = params
        self.ctx = ctx
        language = params.language or options.language
        config = SessionConfig(session_id, ctx.model_name, None if language in (None, "auto")
                               else language, params.task, params.interim, params.words,
                               params.prompt, int(options.resume_window_s))
        self.streams = 2 if params.multichannel else 1  # admitted and counted as this many
        self.stages = build_stages(session_id, params, config, policy or options.policy, ctx,
                                   self._publish, self.dispatch)
        self.core, self.speakers = self.stages.core, self.stages.speakers
        self.driver = SessionDriver(self.core, ScheduledDecodes(ctx.scheduler, session_id),
                                    on_event=self.stages.on_event,
                                    on_finished=lambda: self.speakers.when_said(self._finished))
        self.converter = PcmConverter(params)
        # Tiny frames are batched (session/coalesce.py): held, received, kept across drops.
        self._pending = FrameCoalescer(params.sample_rate * params.bytes_per_frame)
        self.events = EventLog(options.replay_events)
        self.latency = StreamLatency(ctx.telemetry)
        self.samples_received = 0  # client samples (per channel) taken, at its own rate
        self.state = State.STREAMING
        self.link: Link | None = None
        self._last_link: Link | None = None
        self._over = asyncio.Event()
        self.reason = ""
        self.connections = 0
        # Waiting for a resume (or, once over, for a client to read its last events).
        self._expiry = Timer()
        self.detached_at = 0.0
        self._limit = Timer()
        self._eos = False
        self._close_reason = (codes.NORMAL, "end of stream")
        self.started = time.monotonic()
        self._speech = SpeechGrace(options.capacity.speech_grace_s, ctx.clock)

    # -- state --------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        log.debug("event=session_state session=%s from=%s to=%s", self.session_id,
                  self.state.value, state.value)
        self.state = state

    @property
    def over(self) -> bool:
        return self.state is State.OVER

    @property
    def taking_audio(self) -> bool:
        """Neither ending nor over: audio is captioned and keepalives are owed."""
        return self.state is State.STREAMING

    @property
    def connected(self) -> bool:
        return self.link is not None

    @property
    def speaking(self) -> bool:
        """It has speech to decode, or had within the grace (a pause between sentences)."""
        return not self.over and (self.core.speaking or self._speech.recent())

    @property
    def awaiting_resume(self) -> bool:
        return self.link is None and self._expiry.pending and not self.over

    @property
    def eos_received(self) -> bool:
        return self._eos

    @property
    def in_speech(self) -> bool:
        """Its segmenter is inside an utterance (what a translator may ask, not the core)."""
        return self.core.in_speech

    @property
    def open_utterance(self) -> int | None:
        return self.core.open_utterance

    @property
    def utterances_begun(self) -> int:
        return self.core.utterances_begun

    @property
    def finished(self) -> bool:
        """The core said `end`: every final is out."""
        return self.core.finished

    @property
    def decoding(self) -> int:
        """Decodes asked for and not answered yet."""
        return self.driver.inflight

    # -- life -------------------------------------------------------------------------

    def open(self) -> None:
        """Register the new session and say `ready` (into the log, for the first link)."""
        ctx = self.ctx
        if self.params.channel is not None:
            ctx.channels.attach_speaker(self.params.channel, self.session_id)
        ctx.sessions.register(self)
        ctx.telemetry.session_started()
        if ctx.options.max_session_s:
            self._limit.start(ctx.options.max_session_s, self._limit_reached)
        self.dispatch(self.core.start())

    def attach(self, link: Link, since: int | None, peer: str) -> list[Event]:
        """Attach a connection; returns what it must be sent before live events.

        A new session's first connection gets the logged `ready`; a resumed one gets a
        fresh `ready` with `audio_received`, then every event after `since`. A connection
        still attached (half-open: its client already gave up on it) is closed.
        """
        self._expiry.cancel()
        previous, self.link = self.link, link
        self._last_link = link
        self.connections += 1
        if since is None:
            log_session_start(self.session_id, peer, self.params,
                              self.params.language or self.ctx.options.language or "auto",
                              self.speakers.cuts is not None)
            return [self.core.ready(1)]
        if previous is not None:
            previous.take_over()
        received = self.samples_received / self.params.sample_rate
        replay = replay_for(self.session_id, self.events, since, peer, received,
                            previous is not None)
        return [self.core.ready(1, audio_received=received), *replay]

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
        self._expiry.start(window, self._expired)

    def expire_now(self) -> None:
        """Give up waiting for a resume (the server needs the room)."""
        if self._expiry.pending:
            self._expiry.cancel()
            self._expired()

    def resumable_by(self, params: StreamParams) -> None:
        """Raise BadRequest unless a connection with `params` may resume this session."""
        check_resumable(self, params)

    def _expired(self) -> None:
        log.info("event=session_expired session=%s", self.session_id)
        self.reason = "expired"
        # Finalize rather than drop: channel viewers still get the last words' final.
        self._finalize()

    def _limit_reached(self) -> None:
        if not self.taking_audio:
            return
        limit = self.ctx.options.max_session_s or 0
        self._close_reason = (codes.NORMAL, f"session reached the server's limit of {limit:.0f} s")
        self.reason = "max_session"
        self.report(SessionTimeout(
            f"this session reached the server's limit of {limit:.0f} s: finalizing; "
            "start a new stream to go on"))
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
        if not self.taking_audio:
            return
        # Ending first: speech in the last audio asks no admission (it could end us twice).
        self._set_state(State.ENDING)
        self._feed_pending()
        tail = self.converter.drain()
        if len(tail):
            self._run(self.core.feed(tail), tail)
        self.latency.arrived(self.core.position)
        self._run(self.core.eos())

    def report(self, error: CaptioncastError) -> None:
        """Say `error` in the session's events; the stream goes on."""
        self.dispatch(self.core.error(error))

    def fail(self, error: CaptioncastError) -> None:
        """A fatal error: report it, close with its code, and end (no resume)."""
        if self.over:
            return
        self.report(error)
        link = self.link
        self._end(error.code)
        if link is not None:
            link.finish(error.close_code or codes.INTERNAL, error.message[:120])

    def _finished(self) -> None:
        """The core said `end`: release, and close the connection with its reason."""
        link = self.link
        self._end(self.reason or "eos")
        if link is not None:
            link.finish(*self._close_reason)

    def _end(self, reason: str) -> None:
        """Release everything the session holds; events after this are dropped."""
        if self.over:
            return
        self._set_state(State.OVER)
        self._over.set()
        self.reason = self.reason or reason
        self._expiry.cancel()
        self._limit.cancel()
        self.driver.close()
        self.speakers.close()
        self.ctx.speaker_rooms.release(self.params.channel, self.speakers)
        if self.params.channel is not None:
            self.ctx.channels.detach_speaker(self.params.channel, self.session_id,
                                             self.core.duration)
        log_session_end(self.session_id, self.started, self.core, self.latency,
                        self.connections, self.reason, self.speakers.cuts)
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
        self._expiry.start(window, self._forget)

    def _forget(self) -> None:
        self.ctx.sessions.release(self)

    # -- input from the attached connection ---------------------------------------------

    def audio(self, frame: bytes) -> None:
        if not self.taking_audio:
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
            self.report(error)
            return
        self._run(self.core.feed(audio), audio)
        self.latency.arrived(self.core.position)
        self.ctx.telemetry.audio(len(audio) / MODEL_SAMPLE_RATE)
        if self._speech.update(self.core.speaking) and self.taking_audio:
            self._speech_started()

    def _speech_started(self) -> None:
        """Idle to speaking: ask admission what this session may cost now."""
        try:
            decision = self.ctx.speech_started(self)
        except Overloaded as error:
            # This session only: what it said is finalized, the others' finals stay on time.
            self.reason = "overloaded"
            self.report(error)
            self.finalize(error.close_code or codes.OVERLOADED, error.message[:120])
            return
        self.dispatch(self.core.shed_partials(decision is Decision.SHED))

    def _feed_pending(self) -> None:
        pending = self._pending.take()
        if pending:
            self._feed(pending)

    def control(self, kind: str) -> None:
        if kind == "flush" and not self._eos:
            self._feed_pending()
            self._run(self.core.flush())
        elif kind == "end_turn" and not self._eos:
            self._feed_pending()
            self.stages.end_turn()
        elif kind == "eos" and not self._eos:
            self._eos = True
            self._finalize()

    def configure(self, change: Configure) -> None:
        self.stages.configure(change)

    def name_speaker(self, label: str, name: str) -> None:
        self.speakers.name(label, name)  # PROTOCOL.md "Speakers"

    # -- events -------------------------------------------------------------------------

    def dispatch(self, actions: list[Action]) -> None:
        self.driver.dispatch(actions)

    def _run(self, actions: list[Action], audio: np.ndarray | None = None) -> None:
        """A core call's actions; the speakers see what it heard before its events go out."""
        self.stages.heard(audio)
        self.dispatch(actions)

    def _publish(self, event: Event) -> None:
        self.events.add(event)
        added = self.latency.sent(event, self.core.quality() if isinstance(event, Final) else None)
        committed = None
        if self.params.channel is not None:
            if added is not None:
                self.ctx.channels.add_quality(self.params.channel, added)
            committed = self.ctx.channels.publish(self.params.channel, event)
        if self.link is not None and not isinstance(event, Ready):
            self.link.send(event, committed)
