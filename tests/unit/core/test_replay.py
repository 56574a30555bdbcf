"""The session's event log: what a resuming client is replayed."""

from __future__ import annotations

import pytest

from captioncast.core.replay import EventLog
from captioncast.errors import BadRequest
from captioncast.protocol.events import Final, Partial, Ready


def _ready() -> Ready:
    return Ready(1, session="s", model="m", sample_rate=16000, language="en", resume_until=600)


def _events(log: EventLog, count: int) -> None:
    log.add(_ready())
    for seq in range(2, count + 1):
        if seq % 2:
            log.add(Final(seq, utterance=seq, start=0, end=1, text=f"f{seq}", language="en"))
        else:
            log.add(Partial(seq, utterance=seq, start=0, end=1, text=f"p{seq}", stable=""))


def test_replay_is_every_event_after_since_but_ready() -> None:
    log = EventLog()
    _events(log, 9)
    assert [e.seq for e in log.replay(5)] == [6, 7, 8, 9]
    assert [e.seq for e in log.replay(0)] == list(range(2, 10))
    assert log.replay(9) == []


def test_the_log_is_bounded_and_says_when_a_replay_would_have_a_gap() -> None:
    log = EventLog(limit=100)
    _events(log, 1000)
    assert len(log) == 100 and log.first_held == 901
    assert log.complete_after(900) and not log.complete_after(899)
    assert [e.seq for e in log.replay(10)][:2] == [901, 902]


def test_since_past_the_last_event_is_a_bad_request() -> None:
    log = EventLog()
    _events(log, 3)
    with pytest.raises(BadRequest, match="since=4"):
        log.replay(4)


def test_a_resumed_ready_tells_how_much_audio_arrived() -> None:
    ready = Ready(1, session="s", model="m", sample_rate=16000, language="en",
                  resume_until=600, audio_received=12.3456875)
    data = ready.to_dict()
    assert data["resumed"] is True and data["audio_received"] == 12.345688
    assert round(data["audio_received"] * 16000) == 197531  # the exact sample
    assert "audio_received" not in _ready().to_dict()
