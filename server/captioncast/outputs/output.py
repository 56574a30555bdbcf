"""An output of a channel: a bounded queue of finals and one worker that delivers them in order.

`offer()` is synchronous and never waits, so a slow or broken far end never slows captioning,
viewers or the other outputs: the worker task retries the head of the queue with exponential
backoff while new finals queue behind it, and the oldest are dropped (and counted) once the
queue is full, because a caption that is minutes late is worth less than the one just spoken.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from captioncast.outputs.errors import DeliveryError
from captioncast.outputs.speakers import SpeakerTurns, Turn
from captioncast.protocol.backoff import Backoff
from captioncast.protocol.events import Speakers

log = logging.getLogger("captioncast.outputs")

DEFAULT_QUEUE_SIZE = 256  # about half an hour of finals: covers a far end down for minutes
# A bug (not a far end's error) that repeats on one final would block the queue for ever.
MAX_UNEXPECTED_ATTEMPTS = 3

P = TypeVar("P")
Sleep = Callable[[float], Awaitable[None]]


class OutputState(StrEnum):
    IDLE = "idle"  # nothing to send
    SENDING = "sending"
    RETRYING = "retrying"  # the last attempt failed; backing off
    WAITING = "waiting"  # the far end is up but not ready (OBS not streaming, meeting not started)
    CLOSED = "closed"


@dataclass
class Delivery:
    """One final to deliver: the protocol's `final` event and the wall time it was received."""

    event: Mapping[str, Any]
    received_at: float
    turn: Turn | None = None  # the voice changes here (with diarization): who speaks now

    @property
    def text(self) -> str:
        return str(self.event.get("text") or "").strip()

    @property
    def language(self) -> str | None:
        lang = self.event.get("language")
        return str(lang) if lang else None


@dataclass
class OutputStats:
    sent: int = 0
    failed: int = 0  # failed attempts, each retried
    dropped: int = 0  # finals lost: queue full, attempts exhausted, or left at close
    skipped: int = 0  # finals with nothing to send (empty text)
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None


class Output(abc.ABC, Generic[P]):
    """A destination of a channel's finals. Subclasses say how to shape one and send it.

    `prepare()` runs once per final and returns the payload (or None: nothing to send);
    `send()` is retried with the same payload until it succeeds, so a kind keeps what must not
    change between attempts (a sequence number, the captions already shown) in the payload.
    """

    kind: ClassVar[str]

    def __init__(self, *, output_id: str | None = None, queue_size: int = DEFAULT_QUEUE_SIZE,
                 retry: Backoff | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.id = output_id or secrets.token_hex(4)
        self.queue_size = queue_size
        self.retry = retry or Backoff()
        self.stats = OutputStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random()
        self._queue: deque[Delivery] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = False
        self._closing = False
        self._state = OutputState.IDLE
        self._task: asyncio.Task[None] | None = None
        # Decided as finals are offered, in their order, whatever is dropped or retried later.
        self.turns = SpeakerTurns()

    # -- what a kind provides -------------------------------------------------------------

    @abc.abstractmethod
    def prepare(self, delivery: Delivery) -> P | None:
        """The payload for one final, or None when there is nothing to send."""

    @abc.abstractmethod
    async def send(self, payload: P) -> None:
        """One attempt; raises DeliveryError to be retried. Every network wait has a timeout."""

    async def aclose(self) -> None:
        """Release the connection or client; the worker has stopped."""

    def describe(self) -> dict[str, Any]:
        """The settings to show in status, without secrets."""
        return {}

    # -- the caller's side ----------------------------------------------------------------

    @property
    def state(self) -> OutputState:
        return self._state

    def _set_state(self, state: OutputState) -> None:
        if state is not self._state:
            log.debug("output=%s kind=%s state=%s", self.id, self.kind, state)
            self._state = state

    def offer(self, final: Mapping[str, Any], received_at: float | None = None) -> bool:
        """Queue a final; never waits. False when it was refused (closing) and counted dropped.

        Call it from the event loop's thread; the worker starts on the first offer.
        """
        if self._closing:
            self.stats.dropped += 1
            return False
        if len(self._queue) >= self.queue_size:
            self._queue.popleft()
            self.stats.dropped += 1
            log.warning("output=%s kind=%s dropped=oldest queue_size=%d",
                        self.id, self.kind, self.queue_size)
        self._queue.append(Delivery(final, self._clock() if received_at is None else received_at,
                                    self.turns.turn(final)))
        self._idle.clear()
        self._wakeup.set()
        self.start()
        return True

    def speakers(self, table: Speakers) -> None:
        """The channel's newest speaker table: names and merges for the finals offered next."""
        self.turns.update(table)

    def start(self) -> None:
        """Start the worker (idempotent); needs a running event loop."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"output-{self.kind}-{self.id}")

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking finals, deliver what is queued for up to `timeout` s, then stop."""
        self._closing = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        left = self.queued  # before the cancel, which ends the one in flight
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if left:
            self.stats.dropped += left
            log.warning("output=%s kind=%s closed dropped=%d", self.id, self.kind, left)
        self._queue.clear()
        self._set_state(OutputState.CLOSED)
        await self.aclose()

    async def __aenter__(self) -> Output[P]:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def queued(self) -> int:
        return len(self._queue) + (1 if self._in_flight else 0)

    def status(self) -> dict[str, Any]:
        """The output as `/v1/channels` shows it."""
        s = self.stats
        return {
            "id": self.id, "kind": self.kind, "state": str(self._state), **self.describe(),
            "queued": self.queued, "sent": s.sent, "failed": s.failed, "dropped": s.dropped,
            "skipped": s.skipped, "last_error": s.last_error, "last_error_at": s.last_error_at,
            "last_success_at": s.last_success_at,
        }

    def counters(self) -> dict[str, int]:
        """The monotonic counters and the queue gauge for `/metrics`."""
        s = self.stats
        return {"sent": s.sent, "failed": s.failed, "dropped": s.dropped, "skipped": s.skipped,
                "queued": self.queued}

    # -- the worker -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._set_state(OutputState.IDLE)
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            delivery = self._queue.popleft()
            self._in_flight = True
            try:
                await self._deliver(delivery)
            finally:
                self._in_flight = False

    async def _deliver(self, delivery: Delivery) -> None:
        attempt = 0
        unexpected = 0
        payload: P | None = None
        prepared = False
        while True:
            self._set_state(OutputState.SENDING)
            try:
                if not prepared:
                    payload = self.prepare(delivery)
                    prepared = True
                    if payload is None:
                        self.stats.skipped += 1
                        return
                assert payload is not None
                await self.send(payload)
            except DeliveryError as e:
                wait = self._failed(attempt := attempt + 1, str(e), e.retry_after)
                self._set_state(OutputState.WAITING if e.waiting else OutputState.RETRYING)
            except Exception as e:
                log.exception("output=%s kind=%s unexpected error", self.id, self.kind)
                unexpected += 1
                wait = self._failed(attempt := attempt + 1, f"internal: {e!r}", None)
                if unexpected >= MAX_UNEXPECTED_ATTEMPTS:
                    self.stats.dropped += 1
                    return
                self._set_state(OutputState.RETRYING)
            else:
                self.stats.sent += 1
                self.stats.last_success_at = self._clock()
                return
            limit = self.retry.max_attempts
            if limit is not None and attempt >= limit:
                self.stats.dropped += 1
                log.warning("output=%s kind=%s gave up after=%d", self.id, self.kind, attempt)
                return
            await self._sleep(wait)

    def _failed(self, attempt: int, message: str, retry_after: float | None) -> float:
        self.stats.failed += 1
        self.stats.last_error = message
        self.stats.last_error_at = self._clock()
        wait = self.retry.delay(attempt, self._rng)
        if retry_after is not None:
            wait = min(max(wait, retry_after), self.retry.max_s * 4)
        log.info("output=%s kind=%s attempt=%d error=%r retry_in=%.2f",
                 self.id, self.kind, attempt, message, wait)
        return wait
