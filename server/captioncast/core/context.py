"""Audio context for a final: earlier finals' audio in front of an utterance, then only its words.

Whisper hears a short utterance alone far worse than inside its sentence. A final is
decoded with some of the earlier finals' audio in front of it and their text as the
forced prefix; what comes back is cut down to the utterance's own words here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.decoding import DecodedWord, DecodeResult
from captioncast.core.text import clean, compression_ratio, norm_word

ECHO_MARGIN_S = 0.1  # word ends are approximate: this much into the utterance is still context


@dataclass(frozen=True)
class Context:
    """Earlier finals' audio in front of an utterance's, and their text as its prefix."""

    samples: int = 0  # how much of the request's audio comes before the utterance
    text: str = ""
    finals: int = 0  # how many of the latest finals it holds


@dataclass(frozen=True)
class Remembered:
    """A final as context needs it: where its audio lies (samples) and what it said."""

    start: int
    end: int
    text: str


def choose_context(recent: Iterable[Remembered], start: int, audio_from: int, audio_end: int,
                   window: int) -> Context:
    """The earliest run of recent finals, up to now, that fits in front of the utterance.

    `recent` is oldest first; `audio_from` is where the audio still held begins, and
    context and utterance together must fit in `window` samples.
    """
    earliest: int | None = None
    texts: list[str] = []
    for final in reversed(list(recent)):
        if final.start < audio_from or audio_end - final.start > window or final.start >= start:
            break
        earliest = final.start
        texts.insert(0, final.text)
    if earliest is None:
        return Context()
    return Context(samples=start - earliest, text=" ".join(texts), finals=len(texts))


def context_audio(audio: np.ndarray, audio_from: int, start: int,
                  context: Context) -> np.ndarray:
    """A final's audio (held from `audio_from`) from the context's start, or the utterance's."""
    return audio[max(0, start - context.samples - audio_from):]


def without_context(result: DecodeResult, context: Context,
                    prefixed: bool = False) -> DecodeResult:
    """A final decoded with context, as if decoded alone: new words only, on its own clock."""
    if not context.samples:
        return result
    offset = context.samples / MODEL_SAMPLE_RATE
    if not prefixed:
        return _after(result, offset)
    words_all = clean(result.text).split()
    n = len(context.text.split())
    if len(result.words) == len(words_all):
        # After a forced prefix Whisper sometimes says the context's last words again:
        # words that end in the context's audio are such echoes, not the utterance's ...
        keep = [i for i in range(n, len(words_all))
                if result.words[i].end > offset + ECHO_MARGIN_S]
        # ... and so are words that repeat the context's last words at once, whatever
        # their timings.
        keep = keep[_echo_length(context.text.split(), [words_all[i] for i in keep]):]
        text = " ".join(words_all[i] for i in keep)
        timed = tuple(result.words[i] for i in keep)
    else:  # timings that do not map one to one onto words: keep those after the context
        text = " ".join(words_all[n:])
        timed = tuple(w for w in result.words if w.end > offset + ECHO_MARGIN_S)
    return replace(result, text=text, words=_shifted(timed, offset),
                   compression_ratio=compression_ratio(text))


def _echo_length(said: list[str], new: list[str]) -> int:
    """How many leading words of `new` repeat the last words of `said` (two or more)."""
    said_n, new_n = [norm_word(w) for w in said], [norm_word(w) for w in new]
    for size in range(min(len(said_n), len(new_n)), 1, -1):
        if new_n[:size] == said_n[-size:]:
            return size
    return 0


def _after(result: DecodeResult, offset: float) -> DecodeResult:
    """The words whose middle lies after `offset` (the utterance's start), re-timed from it."""
    kept = tuple(w for w in result.words if (w.start + w.end) / 2 > offset)
    text = clean("".join(w.word for w in kept))
    return replace(result, text=text, words=_shifted(kept, offset),
                   compression_ratio=compression_ratio(text))


def _shifted(words: Iterable[DecodedWord], offset: float) -> tuple[DecodedWord, ...]:
    return tuple(
        DecodedWord(w.word, max(0.0, w.start - offset), max(0.0, w.end - offset), w.probability)
        for w in words
    )
