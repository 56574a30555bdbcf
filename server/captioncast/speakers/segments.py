"""Where one voice gives way to another in the speaker segmentation model's frames
(engine/speaker_segmentation.py gives a local voice and a centre sample per frame). Pure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE


@dataclass(frozen=True)
class ChangeOptions:
    # A change needs this much of the old voice before it and of the new one after it
    # (single-voice frames): less of the new is a cough or a backchannel.
    change_before_s: float = 0.5
    change_after_s: float = 0.3
    min_run_s: float = 0.15  # a voice's run shorter than this is the model's noise


def change_in(speakers: np.ndarray, centres: np.ndarray, since: int,
              options: ChangeOptions) -> tuple[int, int] | None:
    """Where one voice gives way to another after sample `since`, as (the old voice's last
    frame, the new voice's first frame) in samples; None when no voice does.

    `speakers` is the local voice per frame (negative: nobody, or two at once), `centres`
    each frame's sample. Runs of one voice shorter than `min_run_s` are dropped first;
    the first change with `change_before_s` of the old voice before it and
    `change_after_s` of the new one after it (up to the next change) is the one.
    """
    keep = (centres >= since) & (speakers >= 0)
    voices, at = speakers[keep], centres[keep]
    if len(voices) == 0:
        return None
    frame_s = float(np.median(np.diff(centres))) / MODEL_SAMPLE_RATE if len(centres) > 1 \
        else 0.0
    # Runs of one voice: [first index, last index, voice].
    edges = np.flatnonzero(np.diff(voices)) + 1
    runs = [(int(a), int(b) - 1, int(voices[a]))
            for a, b in zip(np.r_[0, edges], np.r_[edges, len(voices)], strict=True)]
    runs = [r for r in runs if (r[1] - r[0] + 1) * frame_s >= options.min_run_s]
    merged: list[list[int]] = []
    for a, b, voice in runs:
        if merged and merged[-1][2] == voice:
            merged[-1][1] = b
        else:
            merged.append([a, b, voice])
    spoken: dict[int, float] = {}
    for (a, b, voice), following in itertools.pairwise(merged):
        spoken[voice] = spoken.get(voice, 0.0) + (b - a + 1) * frame_s
        new_s = (following[1] - following[0] + 1) * frame_s
        if spoken[voice] >= options.change_before_s and new_s >= options.change_after_s:
            return int(at[b]), int(at[following[0]])
    return None
