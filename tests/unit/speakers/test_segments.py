"""Where one voice gives way to another in the segmentation model's frames (the model
itself, on real speech: tests/integration/test_speaker_segmentation.py)."""

from __future__ import annotations

import numpy as np

from captioncast.speakers.segments import ChangeOptions, change_in

RATE = 16000
FRAME_STEP = 270  # the segmentation model's


def frame_centres(frames: int) -> np.ndarray:
    return np.arange(frames) * FRAME_STEP + 495


def frames(*runs: tuple[int, float]) -> np.ndarray:
    """Local voices per frame from (voice, seconds) runs; -1 is nobody."""
    return np.concatenate([np.full(round(s * RATE / FRAME_STEP), v) for v, s in runs])


def test_a_change_is_found_between_the_voices() -> None:
    voices = frames((-1, 0.2), (0, 1.2), (-1, 0.3), (1, 0.6))
    centres = frame_centres(len(voices))
    span = change_in(voices, centres, 0, ChangeOptions())
    assert span is not None
    assert abs(span[0] / RATE - 1.42) < 0.05 and abs(span[1] / RATE - 1.72) < 0.05


def test_too_little_of_either_voice_is_no_change() -> None:
    options = ChangeOptions(change_before_s=0.5, change_after_s=0.3)
    short_after = frames((0, 1.5), (1, 0.2))
    assert change_in(short_after, frame_centres(len(short_after)), 0, options) is None
    short_before = frames((0, 0.3), (1, 1.0))
    assert change_in(short_before, frame_centres(len(short_before)), 0, options) is None


def test_a_blip_of_another_voice_is_noise_and_frames_before_the_utterance_do_not_count() -> None:
    voices = frames((1, 2.0), (0, 1.0), (0, 0.0), (1, 0.05), (0, 1.0))
    centres = frame_centres(len(voices))
    # From 2 s on only voice 0 speaks, but for a 50 ms blip.
    assert change_in(voices, centres, 2 * RATE, ChangeOptions()) is None
    # From the start the change at 2 s is found.
    span = change_in(voices, centres, 0, ChangeOptions())
    assert span is not None and abs(span[1] / RATE - 2.0) < 0.05
