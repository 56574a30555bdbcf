"""The turn tracker's rules, on events made to order (live: tests/integration/test_turns.py)."""

from __future__ import annotations

from captioncast.core.params import TurnSettings
from captioncast.protocol.events import Final, Partial, SpeechStarted, Turn, Word
from captioncast.turns.tracker import TurnTracker, Verdict, ends_open

RATE = 16000


def final(utterance: int, text: str, start: float, end: float) -> Final:
    return Final(0, utterance=utterance, start=start, end=end, text=text, language="en",
                 words=(Word(text.split()[0], start, end, 0.9),))


def kinds(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.event if isinstance(e, Turn) else e.type for e in events]


def test_a_turn_starts_with_speech_and_ends_after_its_finals() -> None:
    tracker = TurnTracker(TurnSettings())
    events = tracker.speech_started(0, int(0.5 * RATE))
    assert kinds(events) == ["speech_started", "start"]
    assert isinstance(events[0], SpeechStarted) and events[0].at == 0.5
    assert kinds(tracker.event(Partial(0, utterance=0, start=0.5, end=1.0, text="I would like it",
                                       stable="I"))) == ["update"]
    assert tracker.judge(0.9) is Verdict.END
    assert tracker.end() == []  # its final is not in yet
    said = tracker.event(final(0, "I would like a table.", 0.5, 2.0))
    assert kinds(said) == ["update", "end"]
    end = said[-1]
    assert isinstance(end, Turn) and end.transcript == "I would like a table."
    assert end.confidence == 0.9 and end.end == 2.0


def test_a_pause_after_an_open_word_is_not_the_end_whatever_the_model_says() -> None:
    tracker = TurnTracker(TurnSettings(eager_eot_threshold=0.5))
    tracker.speech_started(0, 0)
    tracker.event(final(0, "I'd like a table for", 0.0, 1.5))
    assert tracker.judge(0.95) is Verdict.WAIT
    # The speaker goes on: the same turn, no second start.
    assert kinds(tracker.speech_started(1, int(2.5 * RATE))) == ["speech_started"]
    tracker.event(final(1, "four, please.", 2.5, 3.2))
    assert tracker.judge(0.6) is Verdict.EAGER
    assert kinds(tracker.eager()) == ["eager_end"]
    assert kinds(tracker.speech_started(2, int(4 * RATE))) == ["speech_started", "resumed"]


def test_silence_past_the_timeout_ends_the_turn() -> None:
    tracker = TurnTracker(TurnSettings(eot_timeout_ms=1000))
    tracker.speech_started(0, 0)
    tracker.heard(RATE)  # voice until 1 s
    assert not tracker.timed_out(int(1.9 * RATE))
    assert tracker.timed_out(2 * RATE)


def test_open_ended_words() -> None:
    assert ends_open("a table for the")
    assert ends_open("I went there and")
    assert not ends_open("glad to see you")
    assert ends_open("a table for the.")  # a cut-off decode gets its period all the same
    assert not ends_open("")


def test_a_model_end_is_taken_back_when_the_final_shows_an_open_word() -> None:
    # The partial lags the speech: the model answers on "I'd like a table", and the final
    # brings the "for" the speaker stopped on.
    tracker = TurnTracker(TurnSettings())
    tracker.speech_started(0, 0)
    tracker.event(Partial(0, utterance=0, start=0.0, end=1.2, text="I'd like a table", stable=""))
    assert tracker.judge(0.95) is Verdict.END
    assert tracker.end(tentative=True) == []
    assert kinds(tracker.event(final(0, "I'd like a table for...", 0.0, 1.5))) == ["update"]
    assert tracker.following  # the turn goes on
    assert kinds(tracker.speech_started(1, int(2.5 * RATE))) == ["speech_started"]
    tracker.event(final(1, "four, please.", 2.5, 3.2))
    assert tracker.judge(0.9) is Verdict.END
    said = tracker.end(tentative=True)
    assert kinds(said) == ["end"]
    assert said[0].transcript == "I'd like a table for... four, please."


def test_the_timeout_ends_a_turn_whatever_its_words() -> None:
    tracker = TurnTracker(TurnSettings())
    tracker.speech_started(0, 0)
    tracker.event(final(0, "so...", 0.0, 0.6))
    assert kinds(tracker.end()) == ["end"]


def test_trailing_off_is_open() -> None:
    assert ends_open("We are sure that...")
    assert ends_open("So\u2026")
    assert not ends_open("A thin stripe runs down the middle.")
