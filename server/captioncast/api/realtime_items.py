"""OpenAI Realtime transcription: which conversation item each of our events speaks of.

Our session says utterances (the VAD's); OpenAI's says items, one per commit of the
input audio buffer. Three mappings, one per turn detection:

- `VadItems` (`server_vad`): the server commits, so each utterance is an item. Our
  `SpeechStarted` gives `speech_started`, its partials deltas (api/realtime_deltas.py);
  its final gives `speech_stopped`, `committed`, the item, the rest of the text and
  `completed`.
- `SemanticItems` (`semantic_vad`, api/realtime_turns.py): each of our turns is an item,
  committed at the turn's end.
- `TurnItems` (turn detection off): the client's `input_audio_buffer.commit` ends a
  turn, and every utterance that began in it is one item, however many pauses the
  speaker made. As OpenAI transcribes only once audio is committed, nothing is said of a
  turn before its commit: then `committed` and the item, then one delta per utterance
  whose final is in, and `completed` with their text once the last one is.

Both are pure: events in, the messages to send out, in order; the translator
(api/openai_realtime.py) does the commits and flushes on the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from captioncast.api.realtime_config import RealtimeWire, SessionFlavour
from captioncast.api.realtime_deltas import ItemText
from captioncast.protocol.events import Final, Partial, SpeechStarted


class ItemWire:
    """The events of one item's life, in the session's flavour."""

    def __init__(self, wire: RealtimeWire, flavour: SessionFlavour, prefix: str) -> None:
        self.wire = wire
        self.flavour = flavour
        self.prefix = prefix
        self.last_item: str | None = None  # the previous_item_id of the next commit
        self._previous: dict[str, str | None] = {}  # each committed item's, until done

    def item_id(self, number: int) -> str:
        return f"{self.prefix}_{number:04d}"

    def _item(self, item: str, transcript: str | None) -> dict[str, Any]:
        return {"id": item, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed",
                "content": [{"type": "input_audio", "transcript": transcript}]}

    def committed(self, item: str) -> list[str]:
        """`committed`, then the user item it adds: `conversation.item.added` (GA) or
        `conversation.item.created` (beta), as each SDK's server events define them."""
        previous, self.last_item = self.last_item, item
        self._previous[item] = previous
        added = ("conversation.item.created" if self.flavour is SessionFlavour.BETA
                 else "conversation.item.added")
        return [self.wire.event("input_audio_buffer.committed", item_id=item,
                                previous_item_id=previous),
                self.wire.event(added, item=self._item(item, None), previous_item_id=previous)]

    def delta(self, item: str, text: str) -> str:
        return self.wire.event("conversation.item.input_audio_transcription.delta",
                               item_id=item, content_index=0, delta=text)

    def completed(self, item: str, transcript: str, seconds: float) -> list[str]:
        """`completed`; in the GA shape also `conversation.item.done`, the item with its
        transcript: the beta API has no such event (its item was whole when created)."""
        out = [self.wire.event(
            "conversation.item.input_audio_transcription.completed", item_id=item,
            content_index=0, transcript=transcript,
            usage={"type": "duration", "seconds": round(seconds, 3)})]
        if self.flavour is SessionFlavour.GA:
            out.append(self.wire.event("conversation.item.done",
                                       item=self._item(item, transcript),
                                       previous_item_id=self._previous.get(item)))
        self._previous.pop(item, None)
        return out


class VadItems:
    """`server_vad`: utterance N is item N. `speech_started` comes from the VAD (our
    `SpeechStarted`, before any word is decoded); an utterance cut from the one before
    it without a pause says it with its first words."""

    def __init__(self, items: ItemWire) -> None:
        self.items = items
        self._texts: dict[int, ItemText] = {}  # each open utterance's deltas so far
        self._dropped: set[int] = set()  # utterances cleared before their final

    def render(self, event: SpeechStarted | Partial | Final) -> list[str]:
        if event.utterance in self._dropped:
            return []
        if isinstance(event, SpeechStarted):
            return self._started(event.utterance, event.at)
        item, out = self.items.item_id(event.utterance), self._started(event.utterance,
                                                                        event.start)
        text = self._texts[event.utterance]
        if isinstance(event, Partial):
            delta = text.partial(event.utterance, event.text, event.stable)
            return out + ([self.items.delta(item, delta)] if delta else [])
        out.append(self.items.wire.event("input_audio_buffer.speech_stopped", item_id=item,
                                         audio_end_ms=round(event.end * 1000)))
        out.extend(self.items.committed(item))
        delta = text.final(event.utterance, event.text)
        if delta:
            out.append(self.items.delta(item, delta))
        del self._texts[event.utterance]
        out.extend(self.items.completed(item, text.transcript, event.end - event.start))
        return out

    def _started(self, utterance: int, at: float) -> list[str]:
        if utterance in self._texts:
            return []
        self._texts[utterance] = ItemText()
        return [self.items.wire.event("input_audio_buffer.speech_started",
                                      item_id=self.items.item_id(utterance),
                                      audio_start_ms=round(at * 1000))]

    def clear(self, open_utterance: int | None) -> None:
        """The open utterance is not committed yet: nothing more is said of it. Those the
        VAD already ended are committed, and complete."""
        if open_utterance is not None:
            self._dropped.add(open_utterance)
            self._texts.pop(open_utterance, None)


@dataclass
class Turn:
    """The audio between two commits (or a commit and a clear)."""

    first: int  # the first utterance that may belong to it
    item: str | None = None  # set at its commit; stays None if it is cleared
    cleared: bool = False
    end: int | None = None  # one past its last utterance, once sealed
    samples: int = 0  # client samples appended in it
    texts: dict[int, str] = field(default_factory=dict)  # its utterances' finals
    said: bool = False  # a delta went out

    def holds(self, utterance: int) -> bool:
        return self.first <= utterance and (self.end is None or utterance < self.end)

    @property
    def complete(self) -> bool:
        return self.end is not None and len(self.texts) == self.end - self.first

    @property
    def transcript(self) -> str:
        return " ".join(t for _, t in sorted(self.texts.items()) if t)


class TurnItems:
    """Turn detection off: a turn is one item, whatever the VAD made of it.

    A commit is two steps around the LiveSession's flush: `commit()` before it (so that
    a final the flush sends at once comes after `committed`), `seal(begun)` after it,
    with the count of utterances begun: the turn holds those from its first to there.
    """

    def __init__(self, items: ItemWire, rate: int) -> None:
        self.items = items
        self.rate = rate  # the client's sample rate, for usage
        self.open = Turn(first=0)
        self._sealed: list[Turn] = []  # committed or cleared, some final still to come
        self._turns = 0  # items made so far

    @property
    def pending_ms(self) -> float:
        """Audio appended since the last commit or clear."""
        return self.open.samples * 1000 / self.rate

    def append(self, samples: int) -> None:
        self.open.samples += samples

    def commit(self) -> list[str]:
        """The open turn becomes an item: `committed`, the item, the finals already in."""
        turn = self.open
        turn.item = self.items.item_id(self._turns)
        self._turns += 1
        out = self.items.committed(turn.item)
        for utterance in sorted(turn.texts):
            out.extend(self._delta(turn, turn.texts[utterance]))
        return out

    def clear(self) -> None:
        """The open turn is dropped: none of its utterances will be said."""
        self.open.cleared = True

    def seal(self, begun: int) -> list[str]:
        """After the flush: the turn ends before utterance `begun`; a new one opens."""
        turn, self.open = self.open, Turn(first=begun)
        turn.end = begun
        if turn.complete:
            return self._completed(turn)
        self._sealed.append(turn)
        return []

    def render(self, event: Partial | Final) -> list[str]:
        if isinstance(event, Partial):
            return []  # nothing is transcribed before the commit (none are asked for)
        turn = next((t for t in [*self._sealed, self.open] if t.holds(event.utterance)),
                    None)
        if turn is None:
            return []
        text = event.text.strip()
        turn.texts[event.utterance] = text
        if turn.complete:
            self._sealed.remove(turn)
        if turn.cleared or turn.item is None:
            return []  # cleared: never said; not committed yet: said at its commit
        out = self._delta(turn, text)
        if turn.complete:
            out.extend(self._completed(turn))
        return out

    def _delta(self, turn: Turn, text: str) -> list[str]:
        if not text:
            return []
        assert turn.item is not None
        delta = f" {text}" if turn.said else text  # the deltas add up to the transcript
        turn.said = True
        return [self.items.delta(turn.item, delta)]

    def _completed(self, turn: Turn) -> list[str]:
        if turn.cleared or turn.item is None:
            return []
        return self.items.completed(turn.item, turn.transcript, turn.samples / self.rate)
