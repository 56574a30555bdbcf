"""The client's side of resuming: audio kept for resending, events handed on once."""

from __future__ import annotations

from captioncast.protocol.events import End, Final, Partial, Ready, Word
from captioncast_client.resume import EventContinuity, SentAudio, reconnect_backoff


def _send_all(audio: SentAudio) -> bytes:
    out = b""
    while (chunk := audio.next_chunk()) is not None:
        out += chunk
        audio.mark_sent(len(chunk))
    return out


def test_audio_is_resent_from_any_byte_the_server_asks_for() -> None:
    audio = SentAudio(max_held=10_000)
    data = bytes(range(200)) * 10
    for i in range(0, len(data), 300):
        audio.add(data[i : i + 300])
    assert _send_all(audio) == data
    assert audio.rewind(1234) == 1234
    assert _send_all(audio) == data[1234:]


def test_confirmed_audio_is_forgotten_unsent_audio_never() -> None:
    audio = SentAudio(max_held=1000)
    for _ in range(10):
        audio.add(b"x" * 300)
    assert audio.held == 3000  # nothing sent yet: all kept, whatever max_held says
    for _ in range(5):
        audio.mark_sent(len(audio.next_chunk() or b""))
    audio.confirm(1200)
    assert audio.base == 1200 and audio.sent == 1500
    assert audio.rewind(0) == 1200  # older audio is gone: resend what is held


def test_sent_audio_past_max_held_is_dropped() -> None:
    audio = SentAudio(max_held=1000)
    for _ in range(10):
        audio.add(b"x" * 300)
        audio.mark_sent(300)
    assert audio.held <= 1200


def _partial(seq: int) -> Partial:
    return Partial(seq, utterance=0, start=0.0, end=1.0, text="hi", stable="")


def test_replayed_events_are_handed_on_once() -> None:
    events = EventContinuity()
    events.last_seq = events.out_seq = 1
    got = [events.accept(_partial(s)) for s in (2, 3)]
    assert [e.seq for e in got if e] == [2, 3]
    # resumed: a new ready, then a replay that overlaps what was read
    assert events.accept(Ready(1, "s", "tiny.en", 16000, "en", 600, audio_received=1.0)) is None
    assert events.accept(_partial(3)) is None
    final = events.accept(Final(4, utterance=0, start=1.0, end=2.5, text="hi", language="en"))
    assert final is not None and final.seq == 4 and events.last_final_end == 2.5


def test_a_new_session_continues_the_numbers_and_the_clock() -> None:
    events = EventContinuity()
    events.last_seq = events.out_seq = 1
    events.accept(Final(2, utterance=0, start=0.5, end=3.0, text="one", language="en"))
    events.new_session(restart_at=3.0)
    final = events.accept(Final(2, utterance=0, start=0.25, end=1.5, text="two", language="en",
                                words=(Word("two", 0.25, 1.5, 0.9),)))
    end = events.accept(End(3, duration=4.0, utterances=1))
    assert isinstance(final, Final) and isinstance(end, End)
    assert (final.seq, final.utterance, final.start, final.end) == (3, 1, 3.25, 4.5)
    assert final.words[0].start == 3.25
    assert (end.seq, end.duration, end.utterances) == (4, 7.0, 2)


def test_backoff_grows_to_its_cap() -> None:
    backoff = reconnect_backoff()
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.125 <= delays[0] <= 0.25
    assert all(d <= 8.0 for d in delays) and delays[-1] >= 4.0
