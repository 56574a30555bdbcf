"""Finals to caption files: cues split for reading, SRT with `srt`, WebVTT with `webvtt-py`.

The one place caption files are made: the server's live channel files, its
`/v1/transcribe` answers and the clients' `--srt`/`--vtt` all render here. Broadcast
captioning guidelines (BBC, Netflix, the FCC's best practices) agree on short lines, at
most two a cue, so an utterance of fifteen seconds becomes several cues timed by its words.

With diarization a cue keeps its final's speaker label, and the writers take the newest
`Speakers` table, so a name given (or a merge found) after the finals still shows: WebVTT
as a voice span on every cue (`<v Alice>`), SRT and text as `Alice: ` where the speaker
changes, the convention of subtitle files that carry no markup.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import srt
import webvtt

from captioncast.protocol.events import Final, Speakers, Word

MAX_LINE_CHARS = 42
MAX_LINES = 2
# A final, or a segment of a transcript answer as JSON (start, end, text, maybe words).
Timed = Final | Mapping[str, Any]


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None  # the final's label (S1, S2...); None without diarization
    speaker_name: str | None = None  # the name the final carried, if any

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


def _speaker(final: Timed) -> tuple[str | None, str | None]:
    if isinstance(final, Final):
        return final.speaker, final.speaker_name
    label, name = final.get("speaker"), final.get("speaker_name")
    return (None if label is None else str(label)), (None if name is None else str(name))


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
        cues = [Cue(start, end, tuple(_wrap(text, width)))]
    else:
        words = [w for w in all_words if w.word.strip()]
        joined = "".join("".join(w.word.split()) for w in words)
        if words and " " in text and joined == text.replace(" ", ""):
            cues = _split_timed(_text_words(text, words), start, end, width, max_lines)
        else:
            cues = _split_untimed(text, start, end, width, max_lines)
    label, name = _speaker(final)
    if label is None:
        return cues
    return [dataclasses.replace(cue, speaker=label, speaker_name=name) for cue in cues]


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


def speaker_name(label: str, fallback: str | None, speakers: Speakers | None) -> str:
    """What a file calls the voice `label`: the table's name (merges followed), else the
    name the final carried, else the label."""
    if speakers is None:
        return fallback or label
    return speakers.display_name(label, fallback)


class SpeakerChanges:
    """Says, final by final or cue by cue, who speaks when the voice changes, else None.

    Merged labels are one voice: S3 `same_as` S1 after S1 is no change.
    """

    def __init__(self, speakers: Speakers | None) -> None:
        self.speakers = speakers
        self._last: str | None = None

    def name(self, label: str | None, fallback: str | None = None) -> str | None:
        if label is None:
            self._last = None
            return None
        voice = self.speakers.resolve(label) if self.speakers is not None else label
        if voice == self._last:
            return None
        self._last = voice
        return speaker_name(label, fallback, self.speakers)


def _prefixed(cue: Cue, name: str | None, width: int = MAX_LINE_CHARS) -> str:
    """The cue's text, `Name: ` before it at a change, wrapped again to fit the width."""
    if name is None:
        return cue.text
    return "\n".join(_wrap(f"{name}: {' '.join(cue.lines)}", width))


def render_srt(cues: Iterable[Cue], reindex: bool = False,
               speakers: Speakers | None = None) -> str:
    """SubRip text; `reindex` lets `srt` sort the cues and skip empty or zero-length ones.

    SubRip has no voice markup: the speaker's name goes before the text at each change.
    """
    changes = SpeakerChanges(speakers)
    subtitles = [
        srt.Subtitle(index=i, start=dt.timedelta(seconds=cue.start),
                     end=dt.timedelta(seconds=cue.end),
                     content=_prefixed(cue, changes.name(cue.speaker, cue.speaker_name)))
        for i, cue in enumerate(cues, start=1)
    ]
    return str(srt.compose(subtitles, reindex=reindex))


def vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def vtt_escape(text: str) -> str:
    """Cue text or a span's annotation as WebVTT reads it: `&`, `<`, `>` as references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_text(cue: Cue, speakers: Speakers | None) -> str:
    if cue.speaker is None:
        return cue.text  # as before diarization, byte for byte
    # A voice span on every cue, not only at a change: players style and filter by voice,
    # and a cue shown alone (a seek) still says who speaks.
    name = " ".join(speaker_name(cue.speaker, cue.speaker_name, speakers).split())
    return f"<v {vtt_escape(name)}>{vtt_escape(cue.text)}"


def render_vtt(cues: Iterable[Cue], speakers: Speakers | None = None) -> str:
    document = webvtt.WebVTT()
    for cue in cues:
        document.captions.append(webvtt.Caption(vtt_time(cue.start), vtt_time(cue.end),
                                                _vtt_text(cue, speakers)))
    return str(document.content)


def render_txt(finals: Iterable[Timed], speakers: Speakers | None = None) -> str:
    """Plain text, a final a line; `Name: ` begins the line where the speaker changes."""
    changes = SpeakerChanges(speakers)
    lines = []
    for final in finals:
        text = _parts(final)[0].strip()
        label, name = _speaker(final)
        said = changes.name(label, name) if text else None
        lines.append(f"{said}: {text}\n" if said is not None else text + "\n")
    return "".join(lines)


def by_speaker(finals: Iterable[Timed], speakers: Speakers | None = None
               ) -> list[dict[str, Any]]:
    """A transcript as paragraphs: consecutive finals of one voice (merges followed) joined,
    each with who spoke, when, and the seqs of its finals. Unlabelled finals form
    paragraphs of their own (speaker None)."""
    paragraphs: list[dict[str, Any]] = []
    last_voice: str | None = None
    for final in finals:
        text, start, end, _ = _parts(final)
        text = " ".join(text.split())
        if not text:
            continue
        label, name = _speaker(final)
        voice = None if label is None else (speakers.resolve(label) if speakers else label)
        seq = final.seq if isinstance(final, Final) else final.get("seq")
        if voice is not None and voice == last_voice:
            paragraph = paragraphs[-1]
            paragraph["end"] = round(end, 3)
            paragraph["text"] += " " + text
            paragraph["finals"].append(seq)
            continue
        last_voice = voice
        paragraphs.append({
            "speaker": voice,
            "name": None if label is None else speaker_name(label, name, speakers),
            "start": round(start, 3), "end": round(end, 3), "text": text, "finals": [seq]})
    return paragraphs


def to_srt(finals: Iterable[Timed], speakers: Speakers | None = None) -> str:
    return render_srt(cues_of(finals), speakers=speakers)


def to_vtt(finals: Iterable[Timed], speakers: Speakers | None = None) -> str:
    return render_vtt(cues_of(finals), speakers=speakers)
