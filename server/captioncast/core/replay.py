"""What a session said, kept so that a client that reconnects can be replayed what it missed.

I/O-free. A dropped TCP connection loses the events in flight (in kernel buffers, in the
sender's queue); the client resumes with the last `seq` it read, and gets every later
event again, in order, before the live ones.
"""

from __future__ import annotations

from collections import deque

from captioncast.errors import BadRequest
from captioncast.protocol.events import Event, Ready

# About 15 minutes of events of a talking speaker with partials (~2 a second); a client
# that reconnects lost seconds, not minutes. Bounded so an hours-long session stays flat.
DEFAULT_REPLAY_EVENTS = 2048


class EventLog:
    """The last `limit` events of one session, by seq."""

    def __init__(self, limit: int = DEFAULT_REPLAY_EVENTS) -> None:
        self._events: deque[Event] = deque(maxlen=max(1, limit))
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: Event) -> None:
        self._events.append(event)
        self.last_seq = event.seq

    @property
    def first_held(self) -> int:
        """The oldest seq still held (last_seq + 1 when nothing is)."""
        return self._events[0].seq if self._events else self.last_seq + 1

    def complete_after(self, since: int) -> bool:
        """True when every event after `since` is still held."""
        return since + 1 >= self.first_held

    def replay(self, since: int) -> list[Event]:
        """The events after `since` that are still held; `ready` is never replayed.

        A reconnecting client gets a fresh `ready` instead. A `since` the session never
        reached is a client bug: BadRequest.
        """
        if since > self.last_seq:
            raise BadRequest(
                f"since={since} is after the last event of this session ({self.last_seq})"
            )
        return [e for e in self._events if e.seq > since and not isinstance(e, Ready)]
