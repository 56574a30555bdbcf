"""Does a final's text cover its voiced audio? Finding the speech a decode skipped, and
merging the words a second decode of just that audio heard.

Asked for text only (no timestamp tokens), Whisper sometimes ends a long utterance early
("... What joy there is in living." and the last sentence is gone) or starts late,
skipping the first words when its prompt leads it elsewhere. Offline, `transcribe()`
keeps those words (bench/word_audit.py: whole sentences lost in continuous speech). The
VAD says where voice was; the final's word timings say what the text accounts for. A
stretch of voice that no word covers is decoded again alone and its words put in place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from captioncast.core.decoding import DecodedWord, DecodeResult
from captioncast.core.text import clean, compression_ratio, norm_word


@dataclass(frozen=True)
class CoverageOptions:
    enabled: bool = True
    # Word timings from cross-attention are approximate: voice this close to a word is
    # taken as its own.
    margin_s: float = 0.3
    # At least this much voice outside every word is speech the decode skipped; less is
    # a breath, a lip smack, a word's tail.
    min_voiced_s: float = 0.8
    # The alignment must place every word somewhere, so around skipped speech it
    # stretches a word over it ("I" timed 0.0-4.9 s, "said" 4.9-8.6 s where 8 s of
    # speech were skipped): a word this long says where, not what, and is decoded again.
    max_word_s: float = 2.0
    pad_s: float = 0.1  # audio either side of a gap, so its first and last words are whole


@dataclass(frozen=True)
class Gap:
    """A stretch of an utterance's audio (seconds from its start) that no word covers.

    The gap's words go after the final's first `before` words. The `stretched` words
    after those lie somewhere in it too; they are kept, since a decode of the gap may
    miss them as the first decode missed the rest, and a word both heard is kept once.
    """

    start: float
    end: float
    before: int
    voiced_s: float
    stretched: int = 0


def find_gap(words: tuple[DecodedWord, ...], voiced: np.ndarray, frame_s: float,
             duration_s: float, options: CoverageOptions) -> Gap | None:
    """The uncovered stretch with the most voice, if it has at least `min_voiced_s`.

    `voiced` is the VAD's mask over the utterance's frames of `frame_s` seconds; `words`
    are timed on the same clock. None when there are no words: an empty final was the
    no-speech rule's decision, not a skip.
    """
    if not words or not voiced.any():
        return None
    margin = options.margin_s
    stretched = [w.end - w.start > options.max_word_s for w in words]
    # Stretches between the words that do say where they are, with the head and the tail:
    # (start, end, words before, stretched words inside).
    anchors = [i for i, s in enumerate(stretched) if not s]
    edges = [-1, *anchors, len(words)]
    best: Gap | None = None
    for left, right in pairwise(edges):
        lo = words[left].end if left >= 0 else 0.0
        hi = words[right].start if right < len(words) else duration_s
        inner_lo = lo + (margin if left >= 0 else 0.0)
        inner_hi = hi - (margin if right < len(words) else 0.0)
        if inner_hi - inner_lo < options.min_voiced_s:
            continue
        first = int(inner_lo / frame_s)
        last = min(len(voiced), int(np.ceil(inner_hi / frame_s)))
        voiced_s = float(voiced[first:last].sum()) * frame_s
        if voiced_s >= options.min_voiced_s and (best is None or voiced_s > best.voiced_s):
            best = Gap(max(0.0, lo - options.pad_s), min(duration_s, hi + options.pad_s),
                       left + 1, voiced_s, stretched=right - left - 1)
    return best


def merge_gap(result: DecodeResult, gap: Gap, heard: DecodeResult) -> DecodeResult:
    """`result` with the words `heard` in `gap` (timed from the gap's start) put in place.

    Words heard by both at either edge of the gap (its padding, the stretched words) are
    kept once. `result`'s words must map one to one onto its text.
    """
    said = clean(result.text).split()
    new = clean(heard.text).split()
    if not new or len(result.words) != len(said):
        return result
    timed = tuple(replace(w, start=w.start + gap.start, end=w.end + gap.start)
                  for w in heard.words)
    before, after = said[: gap.before], said[gap.before:]
    head = _overlap([norm_word(w) for w in before], [norm_word(w) for w in new])
    new, timed = new[head:], timed[head:]
    tail = _overlap([norm_word(w) for w in new], [norm_word(w) for w in after])
    new, timed = new[: len(new) - tail], timed[: len(timed) - tail]
    if not new:
        return result
    text = " ".join([*before, *new, *after])
    words: tuple[DecodedWord, ...] = ()
    if len(timed) == len(new):
        words = (*result.words[: gap.before], *timed, *result.words[gap.before:])
    return replace(result, text=text, words=words, compression_ratio=compression_ratio(text))


def _overlap(first: list[str], second: list[str], most: int = 4) -> int:
    """How many closing words of `first` `second` opens with (at most `most`)."""
    for n in range(min(most, len(first), len(second)), 0, -1):
        if first[-n:] == second[:n]:
            return n
    return 0
