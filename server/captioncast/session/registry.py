"""The live sessions by id: who is registered, who may be admitted, who is evicted.

The registry owns the map: sessions register when they open and release themselves
when they are forgotten, and admission asks them (`connected`, `speaking`,
`awaiting_resume`, `expire_now`) rather than looking at their connections or timers.
A session costs decoding only while it speaks: admission counts `speaking` sessions,
and idle ones (connected, not speaking) per address and per token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from captioncast.errors import Overloaded


class Registered(Protocol):
    """What the registry asks of a session (session/live_session.py's LiveSession)."""

    @property
    def session_id(self) -> str: ...

    @property
    def connected(self) -> bool:
        """A connection is attached."""

    @property
    def speaking(self) -> bool:
        """It has speech to decode now, or had a moment ago (a pause between sentences)."""

    @property
    def streams(self) -> int:
        """Streams it decodes at once: 2 for a multichannel session, else 1."""

    @property
    def address(self) -> str | None:
        """The host its connection came from."""

    @property
    def token_key(self) -> str | None:
        """Which token it presented (security.token_key), None without one."""

    @property
    def awaiting_resume(self) -> bool:
        """Its connection dropped; it waits for the client to resume it."""

    @property
    def detached_at(self) -> float:
        """When it last lost its connection (time.monotonic())."""

    def expire_now(self) -> None:
        """Give up waiting for a resume."""

    def go_away(self) -> None:
        """Server shutdown: finalize, then close."""

    async def wait_closed(self) -> None:
        """Until it is over and its last connection closed."""


class SessionRegistry(Mapping[str, Registered]):
    """Live sessions, attached or awaiting resume, by id (read as a Mapping)."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, Registered] = {}

    def __getitem__(self, session_id: str) -> Registered:
        return self._sessions[session_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def register(self, session: Registered) -> None:
        self._sessions[session.session_id] = session

    def release(self, session: Registered) -> None:
        """Forget `session` (not another one that took its id since)."""
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]

    @property
    def connected(self) -> int:
        return sum(1 for session in self._sessions.values() if session.connected)

    @property
    def speaking(self) -> int:
        """Sessions that cost decoding now."""
        return sum(session.streams for session in self._sessions.values() if session.speaking)

    def idle_from(self, address: str | None) -> int:
        """Connected sessions from `address` that are not speaking."""
        return sum(1 for s in self._idle() if s.address == address)

    def idle_with(self, token_key: str) -> int:
        """Connected sessions that presented this token and are not speaking."""
        return sum(1 for s in self._idle() if s.token_key == token_key)

    def _idle(self) -> Iterator[Registered]:
        return (s for s in self._sessions.values() if s.connected and not s.speaking)

    def make_room(self) -> None:
        """Raise Overloaded at the session limit; evict the oldest abandoned session when
        that many wait for a resume, so that they never lock real clients out."""
        if self.connected >= self.max_sessions:
            raise Overloaded(f"the server is at its limit of {self.max_sessions} sessions")
        waiting = [s for s in self._sessions.values() if s.awaiting_resume]
        if len(waiting) >= self.max_sessions:
            min(waiting, key=lambda s: s.detached_at).expire_now()
