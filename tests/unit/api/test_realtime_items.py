"""OpenAI Realtime items from our utterances: per utterance with VAD, per commit without."""

from __future__ import annotations

import json
from typing import Any

from captioncast.api.realtime_config import RealtimeWire, SessionFlavour
from captioncast.api.realtime_items import ItemWire, TurnItems, VadItems
from captioncast.protocol.events import Final, Partial

RATE = 24000


def _items(flavour: SessionFlavour = SessionFlavour.GA) -> ItemWire:
    return ItemWire(RealtimeWire(), flavour, "item_test")


def _final(utterance: int, text: str, start: float = 0.0, end: float = 1.0) -> Final:
    return Final(utterance + 1, utterance=utterance, start=start, end=end, text=text,
                 language="en")


def _partial(utterance: int, text: str, stable: str) -> Partial:
    return Partial(utterance + 1, utterance=utterance, start=0.0, end=1.0, text=text,
                   stable=stable)


def _parsed(messages: list[str]) -> list[dict[str, Any]]:
    return [json.loads(m) for m in messages]


def _types(messages: list[str]) -> list[str]:
    return [m["type"] for m in _parsed(messages)]


def test_a_turn_is_one_item_whatever_the_vad_made_of_it() -> None:
    turns = TurnItems(_items(), RATE)
    turns.append(RATE * 3)
    assert turns.render(_final(0, "And so my fellow Americans,")) == []  # before the commit
    out = turns.commit()
    assert _types(out) == ["input_audio_buffer.committed", "conversation.item.added",
                           "conversation.item.input_audio_transcription.delta"]
    assert turns.seal(begun=2) == []  # utterance 1 is still being decoded
    out = turns.render(_final(1, "ask not"))
    parsed = _parsed(out)
    assert [m["type"] for m in parsed] == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed", "conversation.item.done"]
    assert parsed[0]["delta"] == " ask not"
    assert parsed[1]["transcript"] == "And so my fellow Americans, ask not"
    assert parsed[1]["usage"] == {"type": "duration", "seconds": 3.0}
    assert parsed[2]["item"]["content"][0]["transcript"] == parsed[1]["transcript"]
    assert turns.pending_ms == 0


def test_a_turn_without_speech_completes_empty_at_its_commit() -> None:
    turns = TurnItems(_items(), RATE)
    turns.append(RATE // 2)
    turns.commit()
    parsed = _parsed(turns.seal(begun=0))
    assert parsed[0]["type"] == "conversation.item.input_audio_transcription.completed"
    assert parsed[0]["transcript"] == ""


def test_a_clear_drops_the_open_turn_and_keeps_the_committed_one() -> None:
    turns = TurnItems(_items(), RATE)
    turns.append(RATE)
    committed = _parsed(turns.commit())[0]
    turns.seal(begun=1)  # utterance 0's final is still to come
    turns.append(RATE)
    turns.clear()
    turns.seal(begun=2)  # utterance 1 was cleared
    assert turns.pending_ms == 0
    kept = _parsed(turns.render(_final(0, "kept")))
    assert kept[-2]["transcript"] == "kept" and kept[-2]["item_id"] == committed["item_id"]
    assert turns.render(_final(1, "cleared words")) == []
    turns.append(RATE)
    second = _parsed(turns.commit())[0]
    assert second["previous_item_id"] == committed["item_id"]


def test_with_vad_each_utterance_is_an_item_and_clear_drops_the_open_one() -> None:
    vad = VadItems(_items(SessionFlavour.BETA))
    first = _types(vad.render(_partial(0, "a golden fortune", "a golden")))
    assert first == ["input_audio_buffer.speech_started",
                     "conversation.item.input_audio_transcription.delta"]
    vad.clear(open_utterance=1)  # utterance 0 was ended by the VAD: it is committed
    assert _types(vad.render(_final(0, "a golden fortune"))) == [
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "conversation.item.created", "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed"]  # beta: no item.done
    assert vad.render(_final(1, "and so my fellow")) == []
