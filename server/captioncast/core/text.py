"""Text rules of the policy: word agreement, cleanup, and guards against Whisper's failure modes."""

from __future__ import annotations

import difflib
import re
import zlib
from collections.abc import Iterable

_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫]+|\*[^*]*\*")
_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w']+")


def clean(text: str) -> str:
    """Drop Whisper's non-speech annotations ([Music], (laughs), ♪) and squeeze spaces."""
    return _SPACES.sub(" ", _NON_SPEECH.sub(" ", text)).strip()


def words_of(text: str) -> list[str]:
    return text.split()


def norm_word(word: str) -> str:
    """A word as agreement compares it: lower case, no punctuation."""
    return _PUNCT.sub("", word.lower())


def agreed_prefix(older: list[str], newer: list[str]) -> int:
    """How many leading words two hypotheses share (LocalAgreement), ignoring case and punctuation.

    The surface form taken is the newer one's; the caller keeps the last word of a
    hypothesis out, since the audio may have cut it mid-word.
    """
    count = 0
    for a, b in zip(older, newer):
        if norm_word(a) != norm_word(b) or not norm_word(b):
            break
        count += 1
    return count


def revised_words(shown: list[str], final: list[str]) -> int:
    """How many of the words a display showed the final changed or dropped.

    Aligned, not compared by position: a final that corrects the first word of
    ten revised one word, not ten. Only the final's words where the shown ones
    could be are considered, so a word matched far later does not count as kept.
    """
    a = [norm_word(w) for w in shown]
    b = [norm_word(w) for w in final[: len(shown) + 2]]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return len(a) - sum(block.size for block in matcher.get_matching_blocks())


def compression_ratio(text: str) -> float:
    """Whisper's own repetition measure: loops compress far better than speech."""
    data = text.encode("utf-8")
    if not data:
        return 1.0
    return len(data) / len(zlib.compress(data))


def prompt_tail(texts: Iterable[str], max_chars: int) -> str:
    """The end of the running transcript, cut at a word boundary."""
    joined = " ".join(t for t in texts if t)
    if len(joined) <= max_chars:
        return joined
    cut = joined[-max_chars:]
    space = cut.find(" ")
    return cut[space + 1 :] if space >= 0 else cut
