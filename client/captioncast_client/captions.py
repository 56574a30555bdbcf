"""Finals to caption files: SRT with `srt`, WebVTT with `webvtt-py`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import srt
import webvtt


def _cues(finals: Sequence[dict[str, Any]]) -> list[tuple[float, float, str]]:
    return [(float(f["start"]), float(f["end"]), str(f["text"])) for f in finals if f.get("text")]


def to_srt(finals: Sequence[dict[str, Any]]) -> str:
    subtitles = [
        srt.Subtitle(index=i, start=dt.timedelta(seconds=start), end=dt.timedelta(seconds=end),
                     content=text)
        for i, (start, end, text) in enumerate(_cues(finals), start=1)
    ]
    return str(srt.compose(subtitles))


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def to_vtt(finals: Sequence[dict[str, Any]]) -> str:
    document = webvtt.WebVTT()
    for start, end, text in _cues(finals):
        document.captions.append(webvtt.Caption(_vtt_time(start), _vtt_time(end), text))
    return str(document.content)


def write_captions(path: Path, finals: Sequence[dict[str, Any]]) -> None:
    """Pick the format from the file name: .srt or .vtt."""
    if path.suffix.lower() == ".vtt":
        path.write_text(to_vtt(finals), encoding="utf-8")
    else:
        path.write_text(to_srt(finals), encoding="utf-8")
