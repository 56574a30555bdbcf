"""Caption files a client writes: its finals as .srt or .vtt, rendered by the protocol package."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from captioncast.protocol.captions import Timed, to_srt, to_vtt
from captioncast.protocol.events import Speakers


def write_captions(path: Path, finals: Iterable[Timed], speakers: Speakers | None = None) -> None:
    """Pick the format from the file name: .srt or .vtt; names from the newest `speakers`."""
    if path.suffix.lower() == ".vtt":
        path.write_text(to_vtt(finals, speakers), encoding="utf-8")
    else:
        path.write_text(to_srt(finals, speakers), encoding="utf-8")
