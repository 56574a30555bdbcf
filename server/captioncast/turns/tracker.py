"""A session's turns: started by speech, ended by the turn model at a pause or by silence.

A turn holds one or more utterances (a speaker who pauses mid-sentence goes on in the
same turn). At a pause the turn model is asked; a turn is over when it is sure enough
(`eot_threshold`) and the words do not end on a word that cannot end a sentence ("a table
for the") or trail off, or when the silence outlasts `eot_timeout_ms`. `end` waits for the
finals of every utterance of the turn, so it carries the turn's final words, and the
words are judged again on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.params import TurnSettings
from captioncast.protocol.events import Event, Final, Partial, SpeechStarted, Turn, Word

# Words after which an English sentence is not over: articles, most prepositions and
# conjunctions, possessives, subject pronouns, modals, fillers ("a table for the... um").
# Words that often end one ("see you", "turn it on", "I do", "why not") are left out.
OPEN_ENDED = frozenset((
    "a", "an", "the", "to", "of", "for", "with", "from", "by", "into", "onto", "than",
    "and", "or", "but", "because", "if", "when", "while", "that", "which", "who",
    "whose", "whom", "my", "your", "his", "her", "its", "our", "their", "these",
    "those", "am", "will", "would", "can", "could", "should", "shall", "must", "very",
    "um", "uh", "er", "erm", "i", "we", "they", "he", "she",
))
_WORD = re.compile(r"[a-z']+")


def ends_open(text: str) -> bool:
    """The words end on one that cannot end a sentence, or trail off ("so...": Whisper's
    mark for speech that stops unfinished). Other punctuation does not count: the
    recognizer closes a cut-off decode with a period ("a table for the.") all the same."""
    if text.rstrip().endswith(("...", "\u2026")):
        return True
    words = _WORD.findall(text.lower())
    return bool(words) and words[-1] in OPEN_ENDED


class Verdict(Enum):
    WAIT = "wait"
    EAGER = "eager"
    END = "end"


@dataclass
class _Turn:
    index: int
    start: float
    utterances: set[int] = field(default_factory=set)
    finals: dict[int, Final] = field(default_factory=dict)
    partial: str = ""
    partial_end: float = 0.0  # where the partial's audio ends: the turn heard so far
    eager_sent: bool = False
    ending: bool = False
    # Ended by the model on the words heard when it answered, which lag the speech by a
    # partial: the turn's finals may yet show it stopped on an open word.
    tentative: bool = False
    confidence: float = 0.0

    def transcript(self) -> str:
        said = [self.finals[u].text.strip() for u in sorted(self.finals)]
        return " ".join(t for t in [*said, self.partial.strip()] if t)

    def words(self) -> tuple[Word, ...]:
        return tuple(w for u in sorted(self.finals) for w in self.finals[u].words)

    def end_s(self) -> float:
        return max([self.start, self.partial_end, *(f.end for f in self.finals.values())])


class TurnTracker:
    def __init__(self, settings: TurnSettings) -> None:
        self.settings = settings
        self._turns: list[_Turn] = []  # the current one last; ended ones await their finals
        self._next = 0
        self._last_voice = 0  # sample where voice was last heard

    @property
    def _turn(self) -> _Turn | None:
        """The turn under way (not yet ended), if any."""
        return self._turns[-1] if self._turns and not self._turns[-1].ending else None

    def speech_started(self, utterance: int, at: int) -> list[Event]:
        """A new utterance began after silence: a turn begins, or goes on (`resumed`)."""
        events: list[Event] = [SpeechStarted(0, utterance=utterance, at=at / MODEL_SAMPLE_RATE)]
        turn = self._turn
        if turn is None:
            turn = _Turn(self._next, at / MODEL_SAMPLE_RATE)
            self._turns.append(turn)
            self._next += 1
            events.append(self._say(turn, "start"))
        elif turn.eager_sent:
            turn.eager_sent = False
            events.append(self._say(turn, "resumed"))
        turn.utterances.add(utterance)
        return events

    def continued(self, utterance: int) -> None:
        """An utterance cut from the one before it (no pause): the same turn."""
        if self._turn is not None:
            self._turn.utterances.add(utterance)

    @property
    def following(self) -> bool:
        """A turn is under way (begun, not yet ended)."""
        return self._turn is not None

    @property
    def last_voice(self) -> int:
        return self._last_voice

    def heard(self, voice_until: int | None) -> None:
        if voice_until is not None:
            self._last_voice = max(self._last_voice, voice_until)

    def timed_out(self, position: int) -> bool:
        timeout = self.settings.eot_timeout_ms * MODEL_SAMPLE_RATE // 1000
        return self._turn is not None and position - self._last_voice >= timeout

    def said(self) -> str:
        """The words of the turn under way so far (for the log)."""
        return "" if self._turn is None else self._turn.transcript()

    def judge(self, probability: float) -> Verdict:
        """The turn model's answer at a pause."""
        turn = self._turn
        if turn is None:
            return Verdict.WAIT
        turn.confidence = probability
        if ends_open(turn.transcript()):
            return Verdict.WAIT
        if self.settings.model_ends_turns and probability >= self.settings.eot_threshold:
            return Verdict.END
        eager = self.settings.eager_eot_threshold
        if eager is not None and probability >= eager and not turn.eager_sent:
            return Verdict.EAGER
        return Verdict.WAIT

    def eager(self) -> list[Event]:
        turn = self._turn
        if turn is None:
            return []
        turn.eager_sent = True
        return [self._say(turn, "eager_end")]

    def end(self, tentative: bool = False) -> list[Event]:
        """The turn is over: its `end` goes out once its finals are in. A `tentative` end
        (the model's) is taken back if those finals end open: the turn goes on, to the
        next speech or the timeout."""
        turn = self._turn
        if turn is None:
            return []
        turn.ending, turn.tentative = True, tentative
        return self._maybe_end(turn)

    def event(self, event: Event) -> list[Event]:
        """A caption event: the turn's words so far (`update`), its end once complete."""
        if not isinstance(event, Partial | Final):
            return []
        turn = next((t for t in self._turns if event.utterance in t.utterances), None)
        if turn is None:
            return []
        if isinstance(event, Partial):
            turn.partial, turn.partial_end = event.text, event.end
            return [] if turn.ending else [self._say(turn, "update")]
        turn.finals[event.utterance] = event
        turn.partial = ""
        return [self._say(turn, "update"), *self._maybe_end(turn)]

    def _maybe_end(self, turn: _Turn) -> list[Event]:
        if not turn.ending or set(turn.finals) < turn.utterances:
            return []
        if turn.tentative and turn is self._turns[-1] and ends_open(turn.transcript()):
            turn.ending = turn.tentative = False
            return []
        self._turns.remove(turn)
        return [self._say(turn, "end")]

    def _say(self, turn: _Turn, what: str) -> Turn:
        return Turn(0, event=what, turn=turn.index, start=turn.start, end=turn.end_s(),
                    transcript=turn.transcript(), words=turn.words(),
                    confidence=turn.confidence)
