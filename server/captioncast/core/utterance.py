"""The caption session's bookkeeping for one utterance: open, speculatively decoded, pending;
and what a partial of the open one shows."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from captioncast.core.context import Context
from captioncast.core.coverage import Gap
from captioncast.core.decoding import DecodeResult
from captioncast.core.options import PolicyOptions
from captioncast.core.repetition import RepetitionGuard, collapse_loops
from captioncast.core.text import agreed_prefix, clean


@dataclass
class Speculation:
    """A final asked for at a pause, before it is known whether the pause ends the utterance."""

    request_id: int
    speech_end: int
    stable: str
    finals_before: int  # finals sent when it was asked for: its prompt and context are stale
    context: Context  # once another final has gone out
    result: DecodeResult | None = None
    done: bool = False


@dataclass
class OpenUtterance:
    """The utterance being spoken: its partials, their agreement, `stable`."""

    index: int
    start: int
    stable: str = ""
    partial_request: int | None = None
    partial_audio_end: int = 0
    speculation: Speculation | None = None
    # Earlier hypotheses' words after `stable`, newest last, for agreement.
    hypotheses: deque[list[str]] = field(default_factory=lambda: deque(maxlen=8))
    shown_stable: str = ""  # `stable` of the last partial sent: what a display holds still
    shown: str = ""  # the last partial's whole text: what a display shows now

    def hear(self, words: list[str], agreement: int, holdback: int) -> list[str]:
        """A partial hypothesis's words after `stable`: those that `agreement` consecutive
        hypotheses agree on, short of the last `holdback`, join `stable` (none with an
        agreement of 0); returns the words left after it."""
        earlier = agreement - 1
        agreed = 0
        if agreement > 0 and len(self.hypotheses) >= earlier:
            agreed = len(words) - holdback
            for older in list(self.hypotheses)[len(self.hypotheses) - earlier:]:
                agreed = min(agreed, agreed_prefix(older, words))
        if agreed > 0:
            self.stable = " ".join([*self.stable.split(), *words[:agreed]])
            words = words[agreed:]
            for older in self.hypotheses:
                del older[:agreed]
        self.hypotheses.append(list(words))
        return words


@dataclass
class PendingFinal:
    """An ended utterance whose final has not gone out yet."""

    index: int
    start: int
    speech_end: int
    audio_start: int
    audio_end: int
    stable: str
    shown_stable: str
    voiced: np.ndarray
    request_id: int  # 0: not asked for yet, it waits for the finals before it (their text
    # is its prompt); `audio` holds its audio until then
    result: DecodeResult | None = None
    failed: str | None = None
    audio: np.ndarray | None = None  # from `audio_from` (context room) to the end, padded
    audio_from: int = 0
    context: Context = field(default_factory=Context)
    shown: str = ""  # the last partial's text, which the final replaces on screen
    # Voice the decode's words do not cover, decoded again alone (core/coverage.py).
    coverage_checked: bool = False
    gap: Gap | None = None
    gap_request: int = 0  # 0: none asked for, or its answer is in
    looped: bool = False  # its decode looped and was cut before the gap was looked for
    # Cut without a pause (samples; 0: not cut): its audio reaches past the cut, and its
    # words are those whose middle lies before it.
    keep_until: int = 0


def shown_text(open_: OpenUtterance, result: DecodeResult, options: PolicyOptions,
               guard: RepetitionGuard) -> str:
    """The partial's text for the open utterance's latest hypothesis; "" to show none.

    The hypothesis is heard by `open_` (its agreed words join `stable`) unless it must not
    be: a decode that ignored the forced prefix, or one that loops or copies the last final.
    """
    text = clean(result.text)
    if not text.startswith(open_.stable):
        return ""  # the decoder did not honour the prefix; never contradict `stable`
    words = text.split()
    if len(collapse_loops(words, options.loops)) < len(words) or guard.copies_previous(words):
        return ""  # a looping or copied hypothesis: its words must never become `stable`
    # an unsure decode agreeing with the prefix it was forced onto is no evidence
    sure = result.avg_logprob >= options.stable_min_logprob
    new_words = open_.hear(text[len(open_.stable):].split(),
                           options.stable_agreement if sure else 0,
                           options.stable_holdback_words)
    # The last words of a hypothesis change most from one decode to the next (the audio
    # may end inside them): a display that waits for them changes less. Words the
    # previous hypothesis said too are shown whatever their place.
    hold = options.partial_holdback_words
    if hold:
        earlier = list(open_.hypotheses)[-2] if len(open_.hypotheses) > 1 else []
        show = max(agreed_prefix(earlier, new_words), len(new_words) - hold,
                   0 if open_.stable else 1)
        new_words = new_words[:show]
    return " ".join([*open_.stable.split(), *new_words])
