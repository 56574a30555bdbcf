"""Drives a CaptionSession: its actions dispatched, its decodes run, their results routed back.

The core asks for decodes and says what to cancel; it never runs one. `SessionDriver`
is the one place that answers it, for live streams (session/live_session.py), file
transcription (transport/file_routes.py) and the scripted tests (tests/support/fake_decoder.py).
Where the decodes run is a `Decodes`: the shared scheduler (`ScheduledDecodes`) or a
test's script.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Protocol

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.policy import Action, Cancel, CaptionSession
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.protocol.events import Event
from captioncast.session.multichannel import DualCore

# What a decode came to: a result, the exception it raised, or None when it was cancelled.
Outcome = DecodeResult | BaseException | None
Done = Callable[[DecodeRequest, Outcome], None]


class Decodes(Protocol):
    """Where a driver's decodes run."""

    def submit(self, request: DecodeRequest, done: Done) -> None:
        """Run `request`; call `done` with its outcome (later, never from inside submit)."""

    def cancel(self, request_id: int) -> None:
        """The session no longer wants this decode."""

    def drop(self) -> None:
        """The session is over: nothing it asked for is worth decoding."""


class ScheduledDecodes:
    """Decodes on the server's shared scheduler, for one owner."""

    def __init__(self, scheduler: DecodeScheduler, owner: str, background: bool = False) -> None:
        self.scheduler = scheduler
        self.owner = owner
        self.background = background  # files: only when no live decode waits
        self._inflight: dict[int, asyncio.Future[DecodeResult]] = {}

    def submit(self, request: DecodeRequest, done: Done) -> None:
        future = self.scheduler.submit(self.owner, request, background=self.background)
        self._inflight[request.request_id] = future
        future.add_done_callback(functools.partial(self._done, request, done))

    def _done(self, request: DecodeRequest, done: Done,
              future: asyncio.Future[DecodeResult]) -> None:
        if self._inflight.get(request.request_id) is future:
            del self._inflight[request.request_id]
        if future.cancelled():
            done(request, None)
        else:
            done(request, future.exception() or future.result())

    def cancel(self, request_id: int) -> None:
        self.scheduler.cancel(self.owner, request_id)

    def drop(self) -> None:
        self.scheduler.drop_owner(self.owner)

    async def settle(self) -> None:
        """Until one of the decodes in flight is done and its outcome handed on."""
        if not self._inflight:
            raise RuntimeError("the session waits for a decode that was never asked for")
        # The driver's callback was added at submit, before asyncio.wait adds its own:
        # it has run by the time this returns.
        await asyncio.wait(list(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)


class SessionDriver:
    """One CaptionSession and the decodes it asked for.

    `on_event` gets every event the session says; `on_decoded` sees each decode result
    before the session does (file transcription keeps a final's confidence figures);
    `on_finished` is called once the session has said `end`.
    """

    def __init__(self, session: CaptionSession | DualCore, decodes: Decodes,
                 on_event: Callable[[Event], None],
                 on_decoded: Callable[[DecodeRequest, DecodeResult], None] | None = None,
                 on_finished: Callable[[], None] | None = None) -> None:
        self.session = session
        self.decodes = decodes
        self.on_event = on_event
        self.on_decoded = on_decoded
        self.on_finished = on_finished
        self.closed = False
        self._pending: set[int] = set()  # asked for, neither answered nor cancelled

    @property
    def inflight(self) -> int:
        return len(self._pending)

    def dispatch(self, actions: list[Action]) -> None:
        """Carry out what the session asked for; nothing once closed."""
        if self.closed:
            return
        for action in actions:
            if isinstance(action, DecodeRequest):
                self._pending.add(action.request_id)
                self.decodes.submit(action, self._decoded)
            elif isinstance(action, Cancel):
                # A decode already running finishes; its result is dropped here.
                self._pending.discard(action.request_id)
                self.decodes.cancel(action.request_id)
            else:
                self.on_event(action)
        if self.session.finished and self.on_finished is not None and not self.closed:
            self.on_finished()

    def close(self) -> None:
        """Stop: queued decodes are dropped, results still to come are ignored."""
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        self.decodes.drop()

    def _decoded(self, request: DecodeRequest, outcome: Outcome) -> None:
        if request.request_id not in self._pending:
            return  # cancelled, or the driver closed
        self._pending.discard(request.request_id)
        if outcome is None or self.closed:
            return
        if isinstance(outcome, BaseException):
            message = str(outcome) or type(outcome).__name__
            self.dispatch(self.session.on_failure(request.request_id, message))
            return
        if self.on_decoded is not None:
            self.on_decoded(request, outcome)
        self.dispatch(self.session.on_result(request.request_id, outcome))
