"""OpenAI Realtime deltas: the words of our partials worth showing, said once, never retracted.

OpenAI's `conversation.item.input_audio_transcription.delta` only appends: a client
concatenates the deltas. Our partials are revised as the decoder hears more, so a word
goes out once it is `stable` (the forced prefix of later partials) or has been in two
consecutive partials at the same place (Whisper rarely changes a word it said twice; the
core already holds back a last word that may be cut). A word once said is never
contradicted: when the final disagrees with what was said, nothing more of that
utterance is appended, and `completed` carries the final transcript, as OpenAI's does.
"""

from __future__ import annotations

import re

_NOT_WORD = re.compile(r"[^\w']+")


def _plain(word: str) -> str:
    """A word as compared: "Americans," and "americans" are one word said twice."""
    return _NOT_WORD.sub("", word.lower())


def _agreed(before: list[str], now: list[str]) -> int:
    """How many leading words two hypotheses share."""
    count = 0
    for one, other in zip(before, now, strict=False):
        if _plain(one) != _plain(other):
            break
        count += 1
    return count


class UtteranceWords:
    """What may be said of one utterance, and what was."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.showable: list[str] = []  # the words worth showing now (said or not)
        self._last: list[str] = []  # the previous partial's words
        self.final = False

    def partial(self, text: str, stable: str) -> None:
        words = text.split()
        shown = max(len(stable.split()), _agreed(self._last, words))
        self._last = words
        self.showable = words[:shown]

    def finish(self, text: str) -> None:
        self.showable = text.split()
        self.final = True

    def take(self) -> list[str]:
        """The words to append now: those showable beyond what was said, if what was
        said still stands (else none, until a partial agrees again)."""
        said = len(self.said)
        if len(self.showable) <= said or _agreed(self.said, self.showable) < said:
            return []
        new = self.showable[said:]
        self.said.extend(new)
        return new


class ItemText:
    """One item's deltas over its utterances, in order: an utterance's words go out once
    every utterance before it in the item is final, so the deltas read in order."""

    def __init__(self) -> None:
        self.order: list[int] = []
        self._words: dict[int, UtteranceWords] = {}
        self._finals: dict[int, str] = {}
        self._any = False  # a delta went out: the next one starts with a space

    def add(self, utterance: int) -> None:
        if utterance not in self._words:
            self.order.append(utterance)
            self._words[utterance] = UtteranceWords()

    def remove(self, utterance: int) -> None:
        if utterance in self._words:
            self.order.remove(utterance)
            del self._words[utterance]

    def partial(self, utterance: int, text: str, stable: str) -> str:
        self.add(utterance)
        self._words[utterance].partial(text, stable)
        return self._delta()

    def final(self, utterance: int, text: str) -> str:
        self.add(utterance)
        self._finals[utterance] = text.strip()
        self._words[utterance].finish(text)
        return self._delta()

    @property
    def transcript(self) -> str:
        """The item's finals, in order: what `completed` says."""
        return " ".join(t for t in (self._finals.get(u, "") for u in self.order) if t)

    def _delta(self) -> str:
        """The words to append now, as one delta's text ("" for none)."""
        new: list[str] = []
        for utterance in self.order:
            words = self._words[utterance]
            new.extend(words.take())
            if not words.final:
                break
        if not new:
            return ""
        text = " ".join(new)
        if self._any:
            text = " " + text
        self._any = True
        return text
