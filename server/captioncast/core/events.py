"""Protocol events (server to client): frozen dataclasses; the wire format lives here only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


def _t(seconds: float) -> float:
    """Times on the wire are seconds with 3 decimals."""
    return round(seconds, 3)


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    p: float

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": _t(self.start), "end": _t(self.end),
                "p": round(self.p, 3)}


@dataclass(frozen=True)
class Event:
    """Base: every event has a type and a per-session sequence number."""

    type: ClassVar[str] = ""
    seq: int

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def with_seq(self, seq: int) -> Event:
        """A copy renumbered for another stream of events (a channel, a replay)."""
        from dataclasses import replace

        return replace(self, seq=seq)


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

    def to_dict(self) -> dict[str, Any]:
        from captioncast import PROTOCOL_VERSION

        out: dict[str, Any] = {
            "type": self.type,
            "seq": self.seq,
            "session": self.session,
            "protocol": PROTOCOL_VERSION,
            "model": self.model,
            "sample_rate": self.sample_rate,
            "language": self.language,
            "resume_until": self.resume_until,
        }
        if self.audio_received is not None:
            out["resumed"] = True
            out["audio_received"] = round(self.audio_received, 6)
        return out


@dataclass(frozen=True)
class Partial(Event):
    type: ClassVar[str] = "partial"
    utterance: int
    start: float
    end: float
    text: str
    stable: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "utterance": self.utterance,
            "start": _t(self.start),
            "end": _t(self.end),
            "text": self.text,
            "stable": self.stable,
        }


@dataclass(frozen=True)
class Final(Event):
    type: ClassVar[str] = "final"
    utterance: int
    start: float
    end: float
    text: str
    language: str
    words: tuple[Word, ...] = field(default=())
    include_words: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "seq": self.seq,
            "utterance": self.utterance,
            "start": _t(self.start),
            "end": _t(self.end),
            "text": self.text,
            "language": self.language,
        }
        if self.include_words:
            out["words"] = [w.to_dict() for w in self.words]
        return out


@dataclass(frozen=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class End(Event):
    type: ClassVar[str] = "end"
    duration: float
    utterances: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "duration": _t(self.duration),
            "utterances": self.utterances,
        }


class Sequencer:
    """Hands out contiguous sequence numbers, starting at 1."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


def _words_from(items: object) -> tuple[Word, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("p", 0.0)))
                 for w in items if isinstance(w, dict))


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """The caption events a channel carries, read back from their wire form (MQTT relay).

    Returns None for anything else; raises KeyError/ValueError/TypeError on a malformed one.
    """
    kind = data.get("type")
    if kind == "partial":
        return Partial(int(data["seq"]), utterance=int(data["utterance"]),
                       start=float(data["start"]), end=float(data["end"]),
                       text=str(data["text"]), stable=str(data.get("stable", "")))
    if kind == "final":
        return Final(int(data["seq"]), utterance=int(data["utterance"]),
                     start=float(data["start"]), end=float(data["end"]), text=str(data["text"]),
                     language=str(data.get("language", "")), words=_words_from(data.get("words")),
                     include_words="words" in data)
    if kind == "end":
        return End(int(data["seq"]), duration=float(data["duration"]),
                   utterances=int(data["utterances"]))
    return None
