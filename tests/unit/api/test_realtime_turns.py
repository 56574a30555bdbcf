"""api/realtime_turns.py: with semantic_vad each of our turns is one OpenAI item."""

from __future__ import annotations

import json
from typing import Any

from captioncast.api.realtime_config import RealtimeWire, SessionFlavour
from captioncast.api.realtime_items import ItemWire
from captioncast.api.realtime_turns import SemanticItems
from captioncast.protocol.events import Final, Partial, SpeechStarted, Turn


def _items() -> SemanticItems:
    return SemanticItems(ItemWire(RealtimeWire(), SessionFlavour.GA, "item_t"))


def _turn(what: str, turn: int, start: float = 0.86, end: float = 0.0) -> Turn:
    return Turn(0, event=what, turn=turn, start=start, end=end, transcript="")


def _partial(utterance: int, text: str) -> Partial:
    return Partial(0, utterance=utterance, start=0.0, end=1.0, text=text, stable=text)


def _final(utterance: int, text: str) -> Final:
    return Final(0, utterance=utterance, start=0.0, end=1.0, text=text, language="en")


def _out(items: SemanticItems, *events: Any) -> list[dict[str, Any]]:
    return [json.loads(m) for e in events for m in items.render(e)]


def test_a_turn_of_two_utterances_is_one_item_committed_at_its_end() -> None:
    items = _items()
    started = _out(items, SpeechStarted(0, utterance=0, at=0.86), _turn("start", 0))
    assert [m["type"] for m in started] == ["input_audio_buffer.speech_started"]
    assert started[0]["audio_start_ms"] == 860  # the VAD's onset, before any word
    said = _out(items, _partial(0, "And so"), _final(0, "And so, my fellow Americans,"),
                SpeechStarted(0, utterance=1, at=3.2), _final(1, "ask not."))
    assert [m["delta"] for m in said] == ["And so", " my fellow Americans,", " ask not."]
    assert {m["item_id"] for m in said} == {started[0]["item_id"]}
    ended = _out(items, _turn("end", 0, end=4.5))
    assert [m["type"] for m in ended] == [
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "conversation.item.added", "conversation.item.input_audio_transcription.completed",
        "conversation.item.done"]
    assert ended[3]["transcript"] == "And so, my fellow Americans, ask not."
    assert ended[0]["audio_end_ms"] == 4500


def test_speech_before_the_old_turns_end_is_said_is_a_new_item() -> None:
    items = _items()
    first = _out(items, SpeechStarted(0, utterance=0, at=0.5), _turn("start", 0))
    _out(items, _partial(0, "Hello"))
    # The turn model ended turn 0; its final is still being decoded as speech resumes.
    second = _out(items, SpeechStarted(0, utterance=1, at=2.0), _turn("start", 1, start=2.0))
    assert second[0]["type"] == "input_audio_buffer.speech_started"
    assert second[0]["item_id"] != first[0]["item_id"]
    assert _out(items, _final(1, "Bye."))[0]["item_id"] == second[0]["item_id"]
    _out(items, _final(0, "Hello."))
    ended = _out(items, _turn("end", 0, end=1.0))
    assert ended[3]["transcript"] == "Hello." and ended[3]["item_id"] == first[0]["item_id"]
    assert _out(items, _turn("end", 1, end=2.5))[3]["transcript"] == "Bye."


def test_a_clear_drops_the_item_under_way_and_later_speech_opens_another() -> None:
    items = _items()
    _out(items, SpeechStarted(0, utterance=0, at=0.5), _turn("start", 0))
    items.clear()
    assert _out(items, _final(0, "dropped")) == []
    again = _out(items, SpeechStarted(0, utterance=1, at=3.0))  # the same turn goes on
    assert again[0]["type"] == "input_audio_buffer.speech_started"
    _out(items, _final(1, "kept"))
    ended = _out(items, _turn("end", 0, end=4.0))
    assert [m["transcript"] for m in ended if "transcript" in m] == ["kept"]
