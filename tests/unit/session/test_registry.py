"""The session registry (session/registry.py): admission, eviction, release."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from captioncast.errors import Overloaded
from captioncast.session.registry import SessionRegistry


@dataclass
class Session:
    session_id: str
    connected: bool = True
    awaiting_resume: bool = False
    detached_at: float = 0.0
    expired: bool = False

    def expire_now(self) -> None:
        self.expired = True

    def go_away(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def test_the_limit_counts_connected_sessions_only() -> None:
    registry = SessionRegistry(2)
    registry.register(Session("a"))
    registry.register(Session("b", connected=False, awaiting_resume=True))
    registry.make_room()  # one connected of two
    registry.register(Session("c"))
    with pytest.raises(Overloaded):
        registry.make_room()


def test_the_oldest_waiting_session_is_evicted_at_the_limit() -> None:
    registry = SessionRegistry(2)
    old = Session("old", connected=False, awaiting_resume=True, detached_at=1.0)
    new = Session("new", connected=False, awaiting_resume=True, detached_at=2.0)
    registry.register(old)
    registry.register(new)
    registry.make_room()
    assert old.expired and not new.expired


def test_release_forgets_only_the_session_that_holds_the_id() -> None:
    registry = SessionRegistry(4)
    first, second = Session("x"), Session("x")
    registry.register(first)
    registry.register(second)
    registry.release(first)
    assert registry["x"] is second
    registry.release(second)
    assert "x" not in registry and not registry
