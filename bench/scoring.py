"""How every English bench turns a transcript into the words WER counts.

whisper-normalizer's EnglishTextNormalizer is what Whisper's own evaluations use, so
figures compare with published ones; it keeps the dots of an ellipsis after a number
("In 1813..." -> "in 1813 ."), and a token with no letter or digit is not a word.
tests/conftest.py's `wer()` applies the same rule.
"""

from __future__ import annotations

from whisper_normalizer.english import EnglishTextNormalizer


class WordNormalizer:
    """Callable like EnglishTextNormalizer; drops the tokens that are not words."""

    def __init__(self) -> None:
        self._english = EnglishTextNormalizer()

    def __call__(self, text: str) -> str:
        return " ".join(w for w in self._english(text).split() if any(c.isalnum() for c in w))
