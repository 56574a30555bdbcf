"""OpenAI Realtime `semantic_vad`: each of our turns (the turn model's) is one item.

The session follows turns (`StreamParams.turns`): `SpeechStarted` then `Turn` `start`
when a turn begins, the partials and finals of its utterances (a speaker who pauses
mid-sentence goes on in the same turn, in more utterances), and `Turn` `end` once the
turn model ends it and its finals are in. So `speech_started` goes out as the VAD hears
speech begin; deltas as the words of the turn's utterances are worth showing
(api/realtime_deltas.py); and at the turn's end `speech_stopped`, `committed`, the item
and `completed` with the turn's final text.

A turn's end waits for its finals, so speech may begin a new turn before the old one's
`end` is said: an utterance belongs to the item open when its speech began, or to a new
one when a `Turn` `start` follows its `SpeechStarted`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from captioncast.api.realtime_deltas import ItemText
from captioncast.api.realtime_items import ItemWire
from captioncast.protocol.events import Final, Partial, SpeechStarted, Turn


@dataclass
class _Item:
    id: str
    turn: int | None
    start: float
    text: ItemText = field(default_factory=ItemText)
    dropped: bool = False  # cleared before its commit: never said again


class SemanticItems:
    def __init__(self, items: ItemWire) -> None:
        self.items = items
        self._made = 0
        self._current: _Item | None = None  # the item new speech joins
        self._open: list[_Item] = []  # not committed yet
        self._of: dict[int, _Item] = {}  # each utterance's item
        self._pending: int | None = None  # the utterance whose SpeechStarted came last
        self._fresh: _Item | None = None  # an item that utterance's SpeechStarted opened
        self._last_turn: int | None = None

    def render(self, event: SpeechStarted | Turn | Partial | Final) -> list[str]:
        if isinstance(event, SpeechStarted):
            return self._speech(event)
        if isinstance(event, Turn):
            if event.event == "start":
                return self._turn_started(event)
            return self._turn_ended(event) if event.event == "end" else []
        out: list[str] = []
        item = self._of.get(event.utterance)
        if item is None:  # cut from the utterance before it, without a pause
            if self._current is None:
                out = self._new(event.utterance, event.start, self._last_turn)
            else:
                self._attach(self._current, event.utterance)
            item = self._of[event.utterance]
        if item.dropped:
            return []
        if isinstance(event, Partial):
            delta = item.text.partial(event.utterance, event.text, event.stable)
        else:
            delta = item.text.final(event.utterance, event.text)
        return out + ([self.items.delta(item.id, delta)] if delta else [])

    def clear(self) -> None:
        """The item under way is not committed: dropped, with the rest of its turn's
        utterances so far; speech after this opens a new item."""
        if self._current is not None:
            self._current.dropped = True
            self._open.remove(self._current)
            self._current = None

    # -- the turn's life --------------------------------------------------------------------

    def _speech(self, event: SpeechStarted) -> list[str]:
        self._pending, self._fresh = event.utterance, None
        if self._current is None:
            out = self._new(event.utterance, event.at, self._last_turn)
            self._fresh = self._current
            return out
        self._attach(self._current, event.utterance)
        return []

    def _turn_started(self, event: Turn) -> list[str]:
        self._last_turn = event.turn
        utterance, fresh = self._pending, self._fresh
        self._pending = self._fresh = None
        if fresh is not None:
            fresh.turn = event.turn  # its speech began this turn
            return []
        if utterance is not None and utterance in self._of:
            # The old turn is ending (its end waits for its finals): this speech is not in it.
            self._of.pop(utterance).text.remove(utterance)
        if utterance is None:
            self._current = self._item(event.start, event.turn)
            return [self._speech_started(self._current)]
        return self._new(utterance, event.start, event.turn)

    def _turn_ended(self, event: Turn) -> list[str]:
        out: list[str] = []
        for item in [i for i in self._open if i.turn == event.turn]:
            self._open.remove(item)
            if item is self._current:
                self._current = None
            out.append(self.items.wire.event("input_audio_buffer.speech_stopped",
                                             item_id=item.id,
                                             audio_end_ms=round(event.end * 1000)))
            out.extend(self.items.committed(item.id))
            out.extend(self.items.completed(item.id, item.text.transcript,
                                            max(event.end - item.start, 0.0)))
        return out

    # -- items ------------------------------------------------------------------------------

    def _item(self, start: float, turn: int | None) -> _Item:
        item = _Item(self.items.item_id(self._made), turn, start)
        self._made += 1
        self._open.append(item)
        return item

    def _new(self, utterance: int, start: float, turn: int | None) -> list[str]:
        self._current = self._item(start, turn)
        self._attach(self._current, utterance)
        return [self._speech_started(self._current)]

    def _attach(self, item: _Item, utterance: int) -> None:
        self._of[utterance] = item
        item.text.add(utterance)

    def _speech_started(self, item: _Item) -> str:
        return self.items.wire.event("input_audio_buffer.speech_started", item_id=item.id,
                                     audio_start_ms=round(item.start * 1000))
