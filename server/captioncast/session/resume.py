"""Resuming a live session: which one a reconnect names, and whether it may have it.

The session id is a 96-bit secret: knowing it is the right to resume (PROTOCOL.md,
"Resuming"). A resume repeats the original stream parameters; only `resume` and
`since` differ.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from captioncast.core.params import StreamParams
from captioncast.core.replay import EventLog
from captioncast.errors import BadRequest
from captioncast.protocol.events import Event

log = logging.getLogger("captioncast.stream")

EXPIRED = ("unknown or expired session: it ended, its resume window passed, or the server "
           "restarted; start a new stream (without resume) to go on")


def _resume_key(params: StreamParams) -> StreamParams:
    """What a resuming connection must repeat: everything but resume and since."""
    return dataclasses.replace(params, resume=None, since=0)


class Resumable(Protocol):
    """What the check reads of a session (session/live_session.py's LiveSession)."""

    reason: str
    params: StreamParams
    events: EventLog

    @property
    def over(self) -> bool: ...

    @property
    def finished(self) -> bool: ...


def check_resumable(live: Resumable, params: StreamParams) -> None:
    """Raise BadRequest unless a connection with `params` may resume `live`."""
    # An expired session is finalizing: audio resent now would be dropped unheard.
    if live.reason == "expired" or (live.over and not live.finished):
        raise BadRequest(EXPIRED)
    if _resume_key(params) != _resume_key(live.params):
        raise BadRequest("resume with the same stream parameters as the original "
                         "connection (only resume and since may differ)")
    if params.since > live.events.last_seq:
        raise BadRequest(f"since={params.since} is after the last event of this session "
                         f"({live.events.last_seq})")


def replay_for(session_id: str, events: EventLog, since: int, peer: str, received: float,
               took_over: bool) -> list[Event]:
    """What a resumed connection missed after `since`, logged (and said when incomplete)."""
    replay = events.replay(since)
    if not events.complete_after(since):
        log.warning("event=replay_incomplete session=%s since=%d first_held=%d",
                    session_id, since, events.first_held)
    log.info("event=session_resumed session=%s peer=%s since=%d replayed=%d "
             "audio_received_s=%.3f took_over=%s", session_id, peer, since,
             len(replay), received, took_over)
    return replay
