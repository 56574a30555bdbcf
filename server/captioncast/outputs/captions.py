"""Shaping a final for a caption display: line wrapping, 608-sized captions, audio to wall time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LINE_CHARS_608 = 32  # CEA-608 shows at most 32 characters on a row
ROWS_608 = 2  # two rows: the usual roll-up depth, enough to read without covering the picture


@dataclass(frozen=True)
class Chunk:
    """One caption: its lines and the audio time (s) it starts and ends."""

    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def wrap(text: str, width: int) -> list[str]:
    """Words greedily into lines of at most `width` characters; a longer word is cut."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while len(word) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        if not word:
            continue
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def _timed_words(event: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """The final's words with times; spread evenly over the utterance when it has none."""
    start = float(event.get("start") or 0.0)
    end = float(event.get("end") or start)
    words: Sequence[Mapping[str, Any]] = event.get("words") or []
    timed = [(str(w.get("word", "")).strip(), float(w.get("start", start)),
              float(w.get("end", w.get("start", start)))) for w in words]
    timed = [w for w in timed if w[0]]
    if timed:
        return timed
    plain = str(event.get("text") or "").split()
    if not plain:
        return []
    step = max(0.0, end - start) / len(plain)
    return [(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(plain)]


def caption_chunks(event: Mapping[str, Any], width: int = LINE_CHARS_608,
                   rows: int = ROWS_608) -> list[Chunk]:
    """Split a final into captions of at most `rows` lines of `width` characters, in order,
    each timed by its first and last word, so a display can pace them as they were spoken."""
    chunks: list[Chunk] = []
    words: list[tuple[str, float, float]] = []
    for word in _timed_words(event):
        candidate = [*words, word]
        if words and len(wrap(" ".join(w[0] for w in candidate), width)) > rows:
            chunks.append(_chunk(words, width))
            words = [word]
        else:
            words = candidate
    if words:
        chunks.append(_chunk(words, width))
    return chunks


def _chunk(words: list[tuple[str, float, float]], width: int) -> Chunk:
    return Chunk(words[0][1], words[-1][2], tuple(wrap(" ".join(w[0] for w in words), width)))


def wall_time(audio_s: float, event: Mapping[str, Any], received_at: float) -> float:
    """The wall time (epoch s) at which audio time `audio_s` was spoken: the final arrived when
    its last audio had been heard, so the end of the utterance maps to `received_at`."""
    end = float(event.get("end") or audio_s)
    return received_at - max(0.0, end - audio_s)


def utc_millis(epoch_s: float) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmm` in UTC, as YouTube's caption ingestion wants it."""
    t = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
