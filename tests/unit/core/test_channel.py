"""The channel core: renumbering, replay, a continuous clock across speakers, slow viewers."""

from __future__ import annotations

from captioncast.core.channel import ChannelLog, ChannelOptions, ViewerBacklog
from captioncast.protocol.events import End, Final, Partial, Ready, Word


def final(seq: int, utterance: int, start: float, end: float, text: str) -> Final:
    words = tuple(Word(w, start + i * 0.1, start + i * 0.1 + 0.1, 0.9)
                  for i, w in enumerate(text.split()))
    return Final(seq, utterance=utterance, start=start, end=end, text=text, language="en",
                 words=words)


def partial(seq: int, utterance: int, text: str) -> Partial:
    return Partial(seq, utterance=utterance, start=0.0, end=1.0, text=text, stable="")


def test_channel_renumbers_with_its_own_contiguous_seq() -> None:
    log = ChannelLog("show")
    log.begin()
    relayed = [log.add(e) for e in (
        Ready(1, "s", "tiny.en", 16000, "en", 0), partial(2, 0, "hel"),
        final(3, 0, 0.0, 1.0, "hello there"), partial(5, 1, "how"),
    )]
    assert relayed[0] is None  # ready belongs to the speaker only
    assert [e.seq for e in relayed if e is not None] == [1, 2, 3]


def test_a_second_speaker_continues_the_clock_and_utterance_numbers() -> None:
    log = ChannelLog("show")
    log.begin()
    log.add(final(2, 0, 0.5, 2.0, "first"))
    end = log.end(duration=3.0)
    assert isinstance(end, End) and end.duration == 3.0 and end.utterances == 1
    log.begin()
    second = log.add(final(2, 0, 1.0, 2.0, "second one"))
    assert isinstance(second, Final)
    assert second.utterance == 1 and second.start == 4.0 and second.end == 5.0
    assert second.words[0].start == 4.0
    assert [c.text for c in log.cues] == ["first", "second one"]


def test_replay_gives_finals_after_since_and_the_partial_in_progress() -> None:
    log = ChannelLog("show", ChannelOptions(history=2))
    log.begin()
    for i in range(3):
        log.add(final(i + 1, i, i, i + 1, f"utterance {i}"))
    log.add(partial(9, 3, "and now"))
    replay = log.replay(0)
    # only two finals are held; the partial of utterance 3 follows them
    assert [type(e).__name__ for e in replay] == ["Final", "Final", "Partial"]
    assert [e.seq for e in log.replay(2)] == [3, 4]
    assert log.replay(4) == []


def test_a_final_clears_the_partial_it_decides() -> None:
    log = ChannelLog("show")
    log.begin()
    log.add(partial(1, 0, "hel"))
    log.add(final(2, 0, 0, 1, "hello"))
    assert log.partial is None and log.replay(1)[-1].type == "final"


def test_slow_viewer_loses_partials_never_finals() -> None:
    backlog = ViewerBacklog(limit=10)
    for i in range(5):
        backlog.push(partial(2 * i + 1, i, f"p{i}"))
        backlog.push(final(2 * i + 2, i, i, i + 1, f"f{i}"))
    backlog.push(partial(20, 5, "latest"))
    backlog.push(partial(21, 5, "latest two"))
    got = []
    while (e := backlog.pop()) is not None:
        got.append(e)
    assert [e.text for e in got if isinstance(e, Final)] == [f"f{i}" for i in range(5)]
    assert [e.text for e in got if isinstance(e, Partial)] == ["latest two"]
    assert [e.seq for e in got] == sorted(e.seq for e in got)
    assert backlog.dropped_partials == 6  # p0-p4 and "latest"


def test_a_viewer_too_far_behind_overflows_instead_of_growing() -> None:
    backlog = ViewerBacklog(limit=3)
    for i in range(4):
        backlog.push(final(i + 1, i, i, i + 1, "x"))
    assert backlog.overflowed and len(backlog) == 0


async def test_hub_cuts_off_a_viewer_that_stops_reading_and_keeps_the_others() -> None:
    import pytest

    from captioncast.errors import BadRequest
    from captioncast.fanout.hub import ChannelHub

    hub = ChannelHub(ChannelOptions(viewer_backlog=2))
    hub.attach_speaker("show", "s1")
    with pytest.raises(BadRequest, match="already has a speaker"):
        hub.attach_speaker("show", "s2")
    stalled = hub.subscribe("show", None)
    reading = hub.subscribe("show", None)
    for i in range(3):
        hub.publish("show", final(i + 1, i, i, i + 1, f"f{i}"))
        assert [e.seq for e in await reading.next_events()] == [i + 1]
    assert await stalled.next_events() == []  # told it is too far behind
    hub.detach_speaker("show", "s1", 3.0)
    assert [e.type for e in await reading.next_events()] == ["end"]
    hub.unsubscribe(stalled)
    assert hub.viewer_count == 1
