"""Who may start: at connect, and again when a session starts speaking.

Admission follows speech. At connect a stream is refused only when the server is loading
or draining, the decoders are already late, the registry is full, or its address or token
holds too many idle sessions; when it starts speaking, `CapacityMeter` decides with the
speaking count (engine/capacity.py): speak, shed its partials, or refuse that session
alone. Each decision is one log line and one counter.
"""

from __future__ import annotations

import logging
from typing import Protocol

from captioncast.engine.capacity import Decision
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import Overloaded, TooManyConnections
from captioncast.session.registry import Registered, SessionRegistry
from captioncast.telemetry.measures import Telemetry

log = logging.getLogger("captioncast.admission")


class IdleLimits(Protocol):
    """How many idle sessions one address, one token may hold (0: no limit)."""

    @property
    def max_idle_per_ip(self) -> int: ...

    @property
    def max_idle_per_token(self) -> int: ...


class Admission:
    """The server's admission decisions, over its registry and its capacity meter."""

    def __init__(self, sessions: SessionRegistry, telemetry: Telemetry,
                 limits: IdleLimits) -> None:
        self.sessions = sessions
        self.telemetry = telemetry
        self.limits = limits

    def admit(self, scheduler: DecodeScheduler | None, draining: bool,
              address: str | None = None, token_key: str | None = None) -> None:
        """Raise Overloaded unless a new stream may connect now (`scheduler` None: the
        model is still loading).

        A connected session that does not speak costs no decoding: it is refused only
        when the decoders are already late, at the session limit, or when its address or
        token holds too many idle sessions.
        """
        if scheduler is None:
            raise Overloaded("the model is still loading; try again in a few seconds",
                             retry_after_s=5)
        if draining:
            raise Overloaded("the server is shutting down")
        try:
            self.sessions.make_room()
            self._idle_limits(address, token_key)
            self.telemetry.capacity.admit(scheduler.lag())
        except Overloaded as error:
            self._decided(scheduler, "connect_refused", address or "-", error.message)
            raise
        self._decided(scheduler, "connect", address or "-")

    def _idle_limits(self, address: str | None, token_key: str | None) -> None:
        retry = self.telemetry.capacity.retry_after()
        limit = self.limits.max_idle_per_ip
        if limit and self.sessions.idle_from(address) >= limit:
            raise TooManyConnections(
                f"too many idle sessions from {address}: the limit is {limit} per address "
                f"(max_idle_per_ip); retry after {retry} s", retry_after_s=retry)
        limit = self.limits.max_idle_per_token
        if limit and token_key is not None and self.sessions.idle_with(token_key) >= limit:
            raise TooManyConnections(
                f"too many idle sessions with this token: the limit is {limit} per token "
                f"(max_idle_per_token); retry after {retry} s", retry_after_s=retry)

    def speech_started(self, scheduler: DecodeScheduler, session: Registered) -> Decision:
        """`session` starts speaking: SPEAK, SHED (finals only), or raise Overloaded."""
        meter, lag = self.telemetry.capacity, scheduler.lag()
        speaking = self.sessions.speaking
        decision = meter.speech_started(speaking, lag)
        self._decided(scheduler, decision.value, session.session_id)
        if decision is Decision.REFUSE:
            raise meter.refusal(speaking, lag)
        return decision

    def _decided(self, scheduler: DecodeScheduler, decision: str, who: str,
                 why: str = "") -> None:
        meter = self.telemetry.capacity
        log.info("event=admission decision=%s who=%s speaking=%d connected=%d capacity=%s "
                 "hard_capacity=%s lag_s=%.2f%s", decision, who, self.sessions.speaking,
                 self.sessions.connected, meter.capacity(), meter.hard_capacity(),
                 scheduler.lag(), f" message={why!r}" if why else "")
        self.telemetry.admission(decision)
