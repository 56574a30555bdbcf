"""What viewers saw of a session's captions: flicker, revisions, empty finals, reading rate.

Latency says when captions came; these say how they read. A caption that keeps
changing is hard to follow even when it is fast, and a reading rate far above 200 words
a minute is hard to keep up with. The session counts; the server adds the counts up per
channel and for /metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CaptionQuality:
    audio_s: float = 0.0
    finals: int = 0
    empty_finals: int = 0  # finals that said nothing: a decode that heard no speech after all
    final_words: int = 0
    shown_words: int = 0  # words partials put on screen ...
    shown_words_changed: int = 0  # ... that a later partial or the final changed: flicker
    stable_words: int = 0  # words shown as `stable` ...
    stable_words_revised: int = 0  # ... that the final changed (protocol 2 allows it)
    gaps_filled: int = 0  # finals whose skipped speech a second decode put back

    def __add__(self, other: CaptionQuality) -> CaptionQuality:
        return CaptionQuality(*(getattr(self, f.name) + getattr(other, f.name)
                                for f in fields(self)))

    def __sub__(self, other: CaptionQuality) -> CaptionQuality:
        return CaptionQuality(*(getattr(self, f.name) - getattr(other, f.name)
                                for f in fields(self)))

    @property
    def flicker_per_min(self) -> float | None:
        """Shown words changed per minute of audio."""
        return self.shown_words_changed * 60 / self.audio_s if self.audio_s else None

    @property
    def words_per_min(self) -> float | None:
        """The finals' reading rate."""
        return self.final_words * 60 / self.audio_s if self.audio_s else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["audio_s"] = round(self.audio_s, 1)
        for name in ("flicker_per_min", "words_per_min"):
            value = getattr(self, name)
            out[name] = None if value is None else round(value, 1)
        out["stable_revised_share"] = (round(self.stable_words_revised / self.stable_words, 4)
                                       if self.stable_words else None)
        return out
