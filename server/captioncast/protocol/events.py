"""Protocol events (server to client): frozen dataclasses, each with one to_json/from_json.

The wire format of PROTOCOL.md lives here only: the server renders these, the clients
and the MQTT relay parse them back. Standard library only, so the client imports it
without the server's extras.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

PROTOCOL_VERSION = 2
E = TypeVar("E", bound="Event")


class ProtocolError(ValueError):
    """A message that is not a well-formed event of this protocol."""


def _t(seconds: float) -> float:
    """Times on the wire are seconds with 3 decimals."""
    return round(seconds, 3)


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    p: float
    speaker: str | None = None  # with diarize: the final's label, on every word

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"word": self.word, "start": _t(self.start),
                               "end": _t(self.end), "p": round(self.p, 3)}
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Word:
        speaker = data.get("speaker")
        return cls(str(data["word"]), float(data["start"]), float(data["end"]),
                   float(data.get("p", 0.0)), None if speaker is None else str(speaker))


@dataclass(frozen=True)
class Event:
    """Base: every event has a type and a per-session sequence number."""

    type: ClassVar[str] = ""
    seq: int

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """This event type from its decoded JSON; ProtocolError for anything else."""
        return _expect(cls, event_from_dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """This event type from its wire form; ProtocolError for anything else."""
        return _expect(cls, parse_event(text))

    def with_seq(self, seq: int) -> Event:
        """A copy renumbered for another stream of events (a channel, a replay)."""
        return dataclasses.replace(self, seq=seq)


@dataclass(frozen=True)
class Ready(Event):
    type: ClassVar[str] = "ready"
    session: str
    model: str
    sample_rate: int
    language: str
    resume_until: int
    # Only on a resumed connection: seconds of the client's audio the server took, exact
    # to the sample (6 decimals), so the client resends from there and nothing is lost.
    audio_received: float | None = None
    protocol: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type, "seq": self.seq, "session": self.session,
            "protocol": self.protocol, "model": self.model, "sample_rate": self.sample_rate,
            "language": self.language, "resume_until": self.resume_until,
        }
        if self.audio_received is not None:
            out["resumed"] = True
            out["audio_received"] = round(self.audio_received, 6)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        received = data.get("audio_received")
        return cls(int(data["seq"]), session=str(data["session"]), model=str(data["model"]),
                   sample_rate=int(data["sample_rate"]), language=str(data["language"]),
                   resume_until=int(data.get("resume_until") or 0),
                   audio_received=None if received is None else float(received),
                   protocol=int(data.get("protocol", PROTOCOL_VERSION)))


@dataclass(frozen=True)
class Partial(Event):
    type: ClassVar[str] = "partial"
    utterance: int
    start: float
    end: float
    text: str
    stable: str
    speaker: str | None = None  # the best guess so far; it may change

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type, "seq": self.seq, "utterance": self.utterance,
            "start": _t(self.start), "end": _t(self.end), "text": self.text,
            "stable": self.stable,
        }
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        speaker = data.get("speaker")
        return cls(int(data["seq"]), utterance=int(data["utterance"]),
                   start=float(data["start"]), end=float(data["end"]),
                   text=str(data["text"]), stable=str(data.get("stable", "")),
                   speaker=None if speaker is None else str(speaker))


@dataclass(frozen=True)
class Final(Event):
    type: ClassVar[str] = "final"
    utterance: int
    start: float
    end: float
    text: str
    language: str
    words: tuple[Word, ...] = field(default=())
    include_words: bool = True  # `words=false` on the stream: the field is left out
    # With diarize or multichannel (PROTOCOL.md "Speakers"): who spoke, fixed for good.
    speaker: str | None = None
    speaker_name: str | None = None
    source_channel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type, "seq": self.seq, "utterance": self.utterance,
            "start": _t(self.start), "end": _t(self.end), "text": self.text,
            "language": self.language,
        }
        if self.speaker is not None:
            out["speaker"] = self.speaker
            if self.speaker_name is not None:
                out["speaker_name"] = self.speaker_name
        if self.source_channel is not None:
            out["source_channel"] = self.source_channel
        if self.include_words:
            out["words"] = [w.to_dict() for w in self.words]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        items = data.get("words")
        words = tuple(Word.from_dict(w) for w in items if isinstance(w, Mapping)) \
            if isinstance(items, list) else ()
        speaker, name, source = (data.get(k) for k in ("speaker", "speaker_name",
                                                        "source_channel"))
        return cls(int(data["seq"]), utterance=int(data["utterance"]),
                   start=float(data["start"]), end=float(data["end"]), text=str(data["text"]),
                   language=str(data.get("language", "")), words=words,
                   include_words="words" in data,
                   speaker=None if speaker is None else str(speaker),
                   speaker_name=None if name is None else str(name),
                   source_channel=None if source is None else int(source))

    def labelled(self, speaker: str, name: str | None = None,
                 source_channel: int | None = None) -> Final:
        """This final with its speaker on it and on each of its words."""
        return dataclasses.replace(
            self, speaker=speaker, speaker_name=name, source_channel=source_channel,
            words=tuple(dataclasses.replace(w, speaker=speaker) for w in self.words))


@dataclass(frozen=True)
class SpeakerEntry:
    """One row of a speaker table: a label, the name it was given, the label it is."""

    id: str
    name: str | None = None
    same_as: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            out["name"] = self.name
        if self.same_as is not None:
            out["same_as"] = self.same_as
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpeakerEntry:
        name, same = data.get("name"), data.get("same_as")
        return cls(str(data["id"]), None if name is None else str(name),
                   None if same is None else str(same))


@dataclass(frozen=True)
class Speakers(Event):
    """The whole speaker table of a session or channel, sent whenever it changes.

    Finals never change: a name or a merge learned later is said here, and every display
    and export applies it (`display_name`).
    """

    type: ClassVar[str] = "speakers"
    speakers: tuple[SpeakerEntry, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq,
                "speakers": [entry.to_dict() for entry in self.speakers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        items = data.get("speakers")
        if not isinstance(items, list):
            raise ProtocolError("a speakers event carries a list of speakers")
        return cls(int(data["seq"]),
                   speakers=tuple(SpeakerEntry.from_dict(e) for e in items
                                  if isinstance(e, Mapping)))

    def resolve(self, label: str) -> str:
        """The label `label` is, following `same_as` (a merge) to its end."""
        table = {entry.id: entry for entry in self.speakers}
        seen = {label}
        while (entry := table.get(label)) is not None and entry.same_as is not None:
            if entry.same_as in seen:
                break
            label = entry.same_as
            seen.add(label)
        return label

    def display_name(self, label: str, fallback: str | None = None) -> str:
        """What a display calls the voice `label`: its (merged) name, else its label."""
        resolved = self.resolve(label)
        for entry in self.speakers:
            if entry.id == resolved and entry.name:
                return entry.name
        return fallback or resolved


@dataclass(frozen=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str  # an ErrorCode value; kept a str so that a newer server's code still parses
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "code": str(self.code),
                "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(int(data.get("seq", 0)), code=str(data["code"]),
                   message=str(data.get("message", "")))


@dataclass(frozen=True)
class End(Event):
    type: ClassVar[str] = "end"
    duration: float
    utterances: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "duration": _t(self.duration),
                "utterances": self.utterances}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(int(data["seq"]), duration=float(data["duration"]),
                   utterances=int(data["utterances"]))


@dataclass(frozen=True)
class SpeechStarted(Event):
    """With `turns=true`: the VAD heard speech begin (before any word is decoded), so a
    voice agent can stop talking at once (barge-in)."""

    type: ClassVar[str] = "speech_started"
    utterance: int
    at: float  # seconds of audio where speech began

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "utterance": self.utterance,
                "at": _t(self.at)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(int(data["seq"]), utterance=int(data["utterance"]), at=float(data["at"]))


TURN_EVENTS = ("start", "update", "eager_end", "resumed", "end")


@dataclass(frozen=True)
class Turn(Event):
    """With `turns=true`: where the speaker's turn stands (Deepgram Flux's TurnInfo).

    `start` when a turn begins; `update` as its words come; `eager_end` when the turn is
    probably over (an agent may start on its reply); `resumed` when speech goes on after
    an `eager_end`; `end` once the turn is over, with every word of it (its finals').
    """

    type: ClassVar[str] = "turn"
    event: str  # one of TURN_EVENTS
    turn: int  # 0, 1, 2, ... per session
    start: float
    end: float
    transcript: str
    words: tuple[Word, ...] = ()
    confidence: float = 0.0  # the turn model's probability that the turn is over

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "event": self.event, "turn": self.turn,
                "start": _t(self.start), "end": _t(self.end), "transcript": self.transcript,
                "words": [w.to_dict() for w in self.words],
                "confidence": round(self.confidence, 3)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        items = data.get("words")
        words = tuple(Word.from_dict(w) for w in items if isinstance(w, Mapping)) \
            if isinstance(items, list) else ()
        return cls(int(data["seq"]), event=str(data["event"]), turn=int(data["turn"]),
                   start=float(data["start"]), end=float(data["end"]),
                   transcript=str(data.get("transcript", "")), words=words,
                   confidence=float(data.get("confidence", 0.0)))


EVENT_TYPES: dict[str, type[Event]] = {
    kind.type: kind
    for kind in (Ready, Partial, Final, Error, End, Speakers, SpeechStarted, Turn)
}
CaptionEvent = Partial | Final | End | Speakers  # what a channel carries to viewers, MQTT


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Any server event from its decoded JSON; ProtocolError when it is not one."""
    kind = EVENT_TYPES.get(str(data.get("type")))
    if kind is None:
        raise ProtocolError(f"unknown event type {data.get('type')!r}")
    try:
        return kind.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind.type} event: {exc!r}") from exc


def parse_event(text: str | bytes) -> Event:
    """Any server event from a text frame (or an MQTT payload, or an ndjson line)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("an event is a JSON object")
    return event_from_dict(data)


def _expect(kind: type[E], event: Event) -> E:
    if not isinstance(event, kind):
        raise ProtocolError(f"expected a {kind.type} event, got {event.type}")
    return event


class Sequencer:
    """Hands out contiguous sequence numbers, starting at 1."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last
