"""Finals to caption files: cues split for reading, SRT with `srt`, WebVTT with `webvtt-py`.

The one place caption files are made: the server's live channel files, its
`/v1/transcribe` answers and the clients' `--srt`/`--vtt` all render here. Broadcast
captioning guidelines (BBC, Netflix, the FCC's best practices) agree on short lines, at
most two a cue, so an utterance of fifteen seconds becomes several cues timed by its words.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import srt
import webvtt

from captioncast.protocol.events import Final, Word

MAX_LINE_CHARS = 42
MAX_LINES = 2
# A final, or a segment of a transcript answer as JSON (start, end, text, maybe words).
Timed = Final | Mapping[str, Any]


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


def _parts(final: Timed) -> tuple[str, float, float, list[Word]]:
    if isinstance(final, Final):
        return final.text, final.start, final.end, list(final.words)
    words = [Word.from_dict(w) for w in final.get("words") or ()]
    return str(final.get("text", "")), float(final["start"]), float(final["end"]), words


def split_final(final: Timed, width: int = MAX_LINE_CHARS,
                max_lines: int = MAX_LINES) -> list[Cue]:
    """One final as cues of at most `max_lines` lines of `width` characters.

    Long utterances are cut between words and each cue takes its words' timings; a final
    without word timings shares its time among its cues by length.
    """
    raw, start, end, all_words = _parts(final)
    text = " ".join(raw.split())
    if not text:
        return []
    if _fits(text, width, max_lines):
        return [Cue(start, end, tuple(_wrap(text, width)))]
    words = [w for w in all_words if w.word.strip()]
    joined = "".join("".join(w.word.split()) for w in words)
    if words and " " in text and joined == text.replace(" ", ""):
        return _split_timed(_text_words(text, words), start, end, width, max_lines)
    return _split_untimed(text, start, end, width, max_lines)


def _text_words(text: str, tokens: Sequence[Word]) -> list[Word]:
    """The final's own words (cut at its spaces), timed by the tokens they are made of.

    Whisper's tokens are not words: "flower-fattened" comes as "flower" and "-fattened".
    Cue text is cut from the final's text, never rebuilt by joining tokens with spaces.
    `text` has single spaces and the tokens spell it out (split_final checked).
    """
    words: list[Word] = []
    at = 0
    for token in tokens:
        spelled = "".join(token.word.split())
        spaced = at < len(text) and text[at] == " "
        at += spaced
        piece = []
        for _ in spelled:
            if text[at] == " ":  # a token that spans a space: the text's own spacing wins
                piece.append(" ")
                at += 1
            piece.append(text[at])
            at += 1
        if words and not spaced:
            last = words[-1]
            words[-1] = Word(last.word + "".join(piece), last.start, token.end,
                             min(last.p, token.p))
        else:
            words.append(Word("".join(piece), token.start, token.end, token.p))
    return words


def _split_timed(words: Sequence[Word], start: float, end: float, width: int,
                 max_lines: int) -> list[Cue]:
    groups: list[list[Word]] = [[]]
    for word in words:
        candidate = " ".join(w.word.strip() for w in [*groups[-1], word])
        if groups[-1] and not _fits(candidate, width, max_lines):
            groups.append([])
        groups[-1].append(word)
    cues = []
    for i, group in enumerate(groups):
        text = " ".join(w.word.strip() for w in group)
        # The first cue starts with the utterance and the last ends with it; between cues
        # the next one starts where this one's last word ends, so nothing flickers off.
        cue_start = start if i == 0 else groups[i][0].start
        cue_end = end if i == len(groups) - 1 else max(groups[i + 1][0].start, group[-1].end)
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


def cues_of(finals: Iterable[Timed]) -> list[Cue]:
    return [cue for final in finals for cue in split_final(final)]


def render_srt(cues: Iterable[Cue], reindex: bool = False) -> str:
    """SubRip text; `reindex` lets `srt` sort the cues and skip empty or zero-length ones."""
    subtitles = [
        srt.Subtitle(index=i, start=dt.timedelta(seconds=cue.start),
                     end=dt.timedelta(seconds=cue.end), content=cue.text)
        for i, cue in enumerate(cues, start=1)
    ]
    return str(srt.compose(subtitles, reindex=reindex))


def vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def render_vtt(cues: Iterable[Cue]) -> str:
    document = webvtt.WebVTT()
    for cue in cues:
        document.captions.append(webvtt.Caption(vtt_time(cue.start), vtt_time(cue.end),
                                                cue.text))
    return str(document.content)


def to_srt(finals: Iterable[Timed]) -> str:
    return render_srt(cues_of(finals))


def to_vtt(finals: Iterable[Timed]) -> str:
    return render_vtt(cues_of(finals))
