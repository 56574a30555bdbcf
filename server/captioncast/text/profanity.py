"""The profanity filter: listed words masked the way Deepgram masks them, one `*` a letter.

Deepgram's `profanity_filter=true` "looks for recognized profanity and replaces it with
asterisks" (developers.deepgram.com/docs/profanity-filter): its example transcript reads
`**** **** ******* ****`, every letter of a profane word an asterisk, no letter kept.
Here the same: a listed word, or its -s/-es/-ed/-ing/-er/-ers form, becomes as many `*`
as it has letters; the punctuation and apostrophes around it stay (`Damn,` -> `****,`,
`shit's` -> `****'s`). Words are matched whole, case-insensitively: `class`, `assess`
and `Scunthorpe` hold a listed word and are not one. The list: profanity_en.txt.

A masked text is as long as the text, character for character, so a partial's `stable`
masked is still the prefix of its `text` masked, and word times stay with their words.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

from captioncast.protocol.events import Event, Final, Partial

MASK = "*"
WORDLIST = "profanity_en.txt"
KEEP = "!"  # a wordlist line that names a form never masked
# A run of letters is a word: digits, apostrophes and hyphens end it, so the `s` of
# `shit's` and each half of `half-assed` are words of their own.
WORD = re.compile(r"[^\W\d_]+")
SUFFIXES = ("s", "es", "ed", "ing", "er", "ers")
MIN_STEM = 3  # no listed word is shorter: "ass"


@dataclass(frozen=True)
class ProfanityOptions:
    """Who gets masked captions when a stream does not say (`profanity_filter=`)."""

    on: bool = False  # --profanity-filter: every stream and file by default
    # Channels whose streams are masked by default (a streamer's family-friendly channel);
    # a stream that says profanity_filter=false on one is not.
    channels: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # masked besides the list (a streamer's own)

    def applies(self, asked: bool | None, channel: str | None = None) -> bool:
        """Whether a stream (or file) that asked `asked` (None: did not say) is masked."""
        if asked is not None:
            return asked
        return self.on or (channel is not None and channel in self.channels)


def _stems(word: str) -> Iterator[str]:
    """The base forms `word` may be an inflection of: shitting -> shit, whored -> whore."""
    for suffix in SUFFIXES:
        stem = word.removesuffix(suffix)
        if stem == word or len(stem) < MIN_STEM:
            continue
        yield stem
        if suffix[0] in "aeiou":
            yield stem + "e"  # whoring, arsed: the base's final e dropped
            if stem[-1] == stem[-2]:
                yield stem[:-1]  # shitting, crapped: the final consonant doubled


class Masker:
    """Masks the listed words of a text; `event` masks what a session says."""

    def __init__(self, words: Iterable[str], keep: Iterable[str] = ()) -> None:
        self.words = frozenset(w.strip().casefold() for w in words if w.strip())
        self.keep = frozenset(w.strip().casefold() for w in keep if w.strip())

    def profane(self, word: str) -> bool:
        """Whether one word (letters only) is masked."""
        folded = word.casefold()
        if folded in self.keep:
            return False
        return folded in self.words or any(stem in self.words for stem in _stems(folded))

    def mask(self, text: str) -> str:
        return WORD.sub(self._mask_word, text)

    def _mask_word(self, match: re.Match[str]) -> str:
        word = match.group()
        return MASK * len(word) if self.profane(word) else word

    def event(self, event: Event) -> Event:
        """`event` with its text masked: a partial's text and stable, a final's text and
        every word; other events as they are."""
        if isinstance(event, Partial):
            text = self.mask(event.text)
            # The core's stable is whole words of text, so this slice is `stable` masked;
            # taken from `text` it stays text's prefix even if it ever ended mid-word.
            stable = (text[:len(event.stable)] if event.text.startswith(event.stable)
                      else self.mask(event.stable))
            if text == event.text and stable == event.stable:
                return event
            return dataclasses.replace(event, text=text, stable=stable)
        if isinstance(event, Final):
            text = self.mask(event.text)
            words = tuple(w if (masked := self.mask(w.word)) == w.word
                          else dataclasses.replace(w, word=masked) for w in event.words)
            if text == event.text and words == event.words:
                return event
            return dataclasses.replace(event, text=text, words=words)
        return event


@functools.cache
def _listed() -> tuple[frozenset[str], frozenset[str]]:
    """The packaged list: words to mask, forms to keep."""
    lines = resources.files(__package__).joinpath(WORDLIST).read_text("utf-8").splitlines()
    entries = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return (frozenset(e for e in entries if not e.startswith(KEEP)),
            frozenset(e[1:] for e in entries if e.startswith(KEEP)))


@functools.cache
def masker(extra: tuple[str, ...] = ()) -> Masker:
    """The list's masker, with `extra` words; one per server, shared by its sessions."""
    words, keep = _listed()
    return Masker((*words, *extra), keep)


def masking(say: Callable[[Event], None], options: ProfanityOptions, asked: bool | None,
            channel: str | None = None) -> Callable[[Event], None]:
    """`say`, given every event masked first when the filter applies (`asked` by the
    stream or file; `channel` it speaks on): the one place a session's events are
    masked, before anyone (client, channel, store, outputs, MQTT) sees them."""
    if not options.applies(asked, channel):
        return say
    mask = masker(options.words).event
    return lambda event: say(mask(event))
