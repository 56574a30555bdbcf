"""Who speaks, for a caption display: a lead at each change of speaker, after the newest table.

Live captions cannot restyle what was shown, so an output marks only where the voice
changes, as broadcast captioners do: CEA-608 (OBS) begins a new speaker with `>> `, and
`>> ALICE: ` once the voice has a name (names in capitals, the 608 convention); the text
platforms (YouTube, Zoom, Teams) begin it with `Alice: `, or `>> ` while the voice is
only a label, since `S2` tells a viewer nothing. A merge (`same_as`) is one voice: no lead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from captioncast.outputs.caption_chunks import wrap
from captioncast.protocol.captions import Cue
from captioncast.protocol.events import Speakers

BROADCAST_LEAD = ">> "


@dataclass(frozen=True)
class Turn:
    """A final where the voice changes: its (merged) label and its name, if known."""

    label: str
    name: str | None = None


class SpeakerTurns:
    """Finals in the order they are shown in, and the newest speaker table: which begin a turn."""

    def __init__(self) -> None:
        self.table: Speakers | None = None
        self._voice: str | None = None

    def update(self, table: Speakers) -> None:
        self.table = table

    def turn(self, final: Mapping[str, Any]) -> Turn | None:
        label = final.get("speaker")
        if label is None:
            self._voice = None  # diarization off: no leads, and the next labelled one leads
            return None
        if not str(final.get("text") or "").strip():
            return None  # nothing shown: the change shows with the next words
        voice = self.table.resolve(str(label)) if self.table is not None else str(label)
        if voice == self._voice:
            return None
        self._voice = voice
        named = None
        if self.table is not None:
            named = next((e.name for e in self.table.speakers if e.id == voice and e.name),
                         None)
        fallback = final.get("speaker_name")
        return Turn(voice, named or (str(fallback) if fallback else None))


def broadcast_lead(turn: Turn | None) -> str:
    """`>> ` or `>> ALICE: ` (CEA-608), or nothing when the voice goes on."""
    if turn is None:
        return ""
    return BROADCAST_LEAD + (f"{turn.name.upper()}: " if turn.name else "")


def name_lead(turn: Turn | None) -> str:
    """`Alice: `, `>> ` for a voice with no name yet, or nothing when the voice goes on."""
    if turn is None:
        return ""
    return f"{turn.name}: " if turn.name else BROADCAST_LEAD


def lead_chunks(chunks: list[Cue], lead: str, width: int, rows: int) -> list[Cue]:
    """`chunks` with `lead` before the first, wrapped again; what no longer fits its rows
    becomes a caption of its own that shares the first one's time."""
    if not lead or not chunks:
        return chunks
    first = chunks[0]
    lines = wrap(lead + " ".join(first.lines), width)
    if len(lines) <= rows:
        return [dataclasses.replace(first, lines=tuple(lines)), *chunks[1:]]
    middle = first.start + (first.end - first.start) / 2
    return [dataclasses.replace(first, end=middle, lines=tuple(lines[:rows])),
            dataclasses.replace(first, start=middle, lines=tuple(lines[rows:])),
            *chunks[1:]]
