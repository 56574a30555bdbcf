"""What the transcript store holds and answers: finals, channel metadata, health, errors.

Stdlib only, beside the protocol's word type (`Word`, stdlib too): a stored final's words
are the wire's, and the rest is the store's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from captioncast.errors import CaptioncastError
from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import SpeakerEntry, Speakers, Word


class StoreError(CaptioncastError):
    """The store cannot be opened or written: a corrupt file, a newer schema, an I/O error.

    `transient` errors (a full disk, a read-only file, Postgres away) are worth retrying;
    the others (a value the engine refuses) are not.
    """

    code = ErrorCode.INTERNAL
    close_code = None

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


def _t(seconds: float) -> float:
    """Times on the wire are seconds with 3 decimals (as in the protocol's events)."""
    return round(seconds, 3)


# A stored final's words are the protocol's: one word type for the wire and the store.
StoredWord = Word


@dataclass(frozen=True)
class StoredFinal:
    """One final of one channel, numbered by the channel, exactly as viewers were sent it.

    `text` is the final's own text: caption cues are cut from it, never rebuilt by joining
    the words (which turns "flower-fattened" into "flower -fattened").
    """

    channel: str
    seq: int
    utterance: int
    start: float  # seconds on the channel's timeline
    end: float
    text: str
    language: str
    words: tuple[StoredWord, ...] = ()
    session: str = ""  # the speaker's session that said it
    received: float = 0.0  # wall clock (Unix seconds) when the server had it
    # With diarization (PROTOCOL.md "Speakers"): the label, and the name it had then.
    speaker: str | None = None
    speaker_name: str | None = None
    source_channel: int | None = None

    def to_dict(self, words: bool = True) -> dict[str, Any]:
        """The protocol's `final` event shape, which the caption renderers take."""
        out: dict[str, Any] = {
            "type": "final", "seq": self.seq, "utterance": self.utterance,
            "start": _t(self.start), "end": _t(self.end), "text": self.text,
            "language": self.language,
        }
        if self.speaker is not None:
            out["speaker"] = self.speaker
            if self.speaker_name is not None:
                out["speaker_name"] = self.speaker_name
        if self.source_channel is not None:
            out["source_channel"] = self.source_channel
        if words:
            out["words"] = [w.to_dict() for w in self.words]
        return out


def words_to_json(words: tuple[StoredWord, ...]) -> str:
    # Arrays, not objects: a word's keys would be most of a stored final's bytes. A word's
    # speaker is its final's (one final, one speaker), so it is not stored per word.
    return json.dumps([[w.word, _t(w.start), _t(w.end), round(w.p, 3)] for w in words],
                      ensure_ascii=False, separators=(",", ":"))


def words_from_json(text: str, speaker: str | None = None) -> tuple[StoredWord, ...]:
    return tuple(StoredWord(str(w), float(s), float(e), float(p), speaker)
                 for w, s, e, p in json.loads(text or "[]"))


def speakers_to_json(speakers: tuple[SpeakerEntry, ...]) -> str:
    return json.dumps([entry.to_dict() for entry in speakers], ensure_ascii=False,
                      separators=(",", ":"))


def speakers_from_json(text: str | None) -> tuple[SpeakerEntry, ...] | None:
    if text is None:
        return None
    return tuple(SpeakerEntry.from_dict(entry) for entry in json.loads(text))


@dataclass(frozen=True)
class Mark:
    """A channel was live at `at` (wall clock): a session began or ended, or `seq` was used.

    A channel's seq also numbers partials and `end` events, which are not stored; marking
    the highest seq used keeps a viewer's `since` meaningful after a restart.
    """

    channel: str
    at: float
    seq: int = 0
    session: str = ""
    # The channel's whole speaker table as of `seq` (a `speakers` event): the newest is
    # kept, so names and merges still apply to its transcript after a restart.
    speakers: tuple[SpeakerEntry, ...] | None = None


@dataclass(frozen=True)
class Position:
    """Where a channel's numbering stands: the next session continues after it."""

    seq: int = 0  # highest seq used (finals and marks)
    utterances: int = 0  # utterances numbered so far (the last utterance + 1)
    end: float = 0.0  # the furthest time on the channel's timeline
    speakers: tuple[SpeakerEntry, ...] | None = None  # its newest speaker table, if any
    speakers_seq: int = 0  # the seq that table was sent under

    def speakers_event(self) -> Speakers | None:
        """The kept speaker table as the event it was sent as; None if there is none."""
        if self.speakers is None:
            return None
        return Speakers(self.speakers_seq, speakers=self.speakers)


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    created: float  # wall clock of the first write
    last_live: float  # wall clock of the last final or mark
    sessions: tuple[str, ...] = ()  # speakers' sessions, first to last
    finals: int = 0
    words: int = 0
    duration: float = 0.0  # the channel's timeline: the end of its last final
    speech: float = 0.0  # summed length of its finals
    last_seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "last_live": self.last_live,
                "sessions": list(self.sessions), "finals": self.finals, "words": self.words,
                "duration": _t(self.duration), "speech": _t(self.speech),
                "last_seq": self.last_seq}


@dataclass(frozen=True)
class ChannelPage:
    channels: tuple[ChannelInfo, ...]
    next_after: str | None = None  # pass as `after` for the next page; None: the last page


@dataclass(frozen=True)
class StoreHealth:
    """For /healthz: degraded while writes fail; dropped counts finals lost to overflow."""

    status: Literal["ok", "degraded"] = "ok"
    backend: str = ""
    queued: int = 0
    written: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "backend": self.backend, "queued": self.queued,
                "written": self.written, "dropped": self.dropped,
                "last_error": self.last_error, "last_error_at": self.last_error_at}
