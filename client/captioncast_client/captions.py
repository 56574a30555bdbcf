"""Finals to caption files: cues split for reading, SRT with `srt`, WebVTT with `webvtt-py`.

Broadcast captioning guidelines (BBC, Netflix, the FCC's best practices) agree on short
lines, at most two a cue, so an utterance of fifteen seconds becomes several cues timed
by its words.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import srt
import webvtt

MAX_LINE_CHARS = 42
MAX_LINES = 2


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width, break_long_words=True, break_on_hyphens=False)


def _fits(text: str, width: int, max_lines: int) -> bool:
    return len(_wrap(text, width)) <= max_lines


def split_final(final: Mapping[str, Any], width: int = MAX_LINE_CHARS,
                max_lines: int = MAX_LINES) -> list[Cue]:
    """One final as cues of at most `max_lines` lines of `width` characters.

    Long utterances are cut between words and each cue takes its words' timings; a final
    without word timings shares its time among its cues by length.
    """
    text = " ".join(str(final.get("text", "")).split())
    if not text:
        return []
    start, end = float(final["start"]), float(final["end"])
    if _fits(text, width, max_lines):
        return [Cue(start, end, tuple(_wrap(text, width)))]
    words = [w for w in final.get("words") or () if str(w.get("word", "")).strip()]
    joined = "".join("".join(str(w["word"]).split()) for w in words)
    if words and " " in text and joined == text.replace(" ", ""):
        return _split_timed(words, start, end, width, max_lines)
    return _split_untimed(text, start, end, width, max_lines)


def _split_timed(words: Sequence[Mapping[str, Any]], start: float, end: float, width: int,
                 max_lines: int) -> list[Cue]:
    groups: list[list[Mapping[str, Any]]] = [[]]
    for word in words:
        candidate = " ".join(str(w["word"]).strip() for w in [*groups[-1], word])
        if groups[-1] and not _fits(candidate, width, max_lines):
            groups.append([])
        groups[-1].append(word)
    cues = []
    for i, group in enumerate(groups):
        text = " ".join(str(w["word"]).strip() for w in group)
        # The first cue starts with the utterance and the last ends with it; between cues
        # the next one starts where this one's last word ends, so nothing flickers off.
        cue_start = start if i == 0 else float(groups[i][0]["start"])
        cue_end = end if i == len(groups) - 1 else max(float(groups[i + 1][0]["start"]),
                                                       float(group[-1]["end"]))
        cue_start = max(start, min(cue_start, end))
        cue_end = max(cue_start, min(cue_end, end))
        cues.append(Cue(cue_start, cue_end, tuple(_wrap(text, width))))
    return cues


def _split_untimed(text: str, start: float, end: float, width: int,
                   max_lines: int) -> list[Cue]:
    lines = _wrap(text, width)
    chunks = [lines[i : i + max_lines] for i in range(0, len(lines), max_lines)]
    total = sum(len(" ".join(c)) for c in chunks) or 1
    cues, at = [], start
    for chunk in chunks:
        span = (end - start) * len(" ".join(chunk)) / total
        cues.append(Cue(at, at + span, tuple(chunk)))
        at += span
    return cues


def cues_of(finals: Iterable[Mapping[str, Any]]) -> list[Cue]:
    return [cue for final in finals for cue in split_final(final)]


def render_srt(cues: Iterable[Cue]) -> str:
    subtitles = [
        srt.Subtitle(index=i, start=dt.timedelta(seconds=cue.start),
                     end=dt.timedelta(seconds=cue.end), content=cue.text)
        for i, cue in enumerate(cues, start=1)
    ]
    return str(srt.compose(subtitles, reindex=False))


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def render_vtt(cues: Iterable[Cue]) -> str:
    document = webvtt.WebVTT()
    for cue in cues:
        document.captions.append(
            webvtt.Caption(_vtt_time(cue.start), _vtt_time(cue.end), cue.text)
        )
    return str(document.content)


def to_srt(finals: Sequence[Mapping[str, Any]]) -> str:
    return render_srt(cues_of(finals))


def to_vtt(finals: Sequence[Mapping[str, Any]]) -> str:
    return render_vtt(cues_of(finals))


def write_captions(path: Path, finals: Sequence[Mapping[str, Any]]) -> None:
    """Pick the format from the file name: .srt or .vtt."""
    if path.suffix.lower() == ".vtt":
        path.write_text(to_vtt(finals), encoding="utf-8")
    else:
        path.write_text(to_srt(finals), encoding="utf-8")
