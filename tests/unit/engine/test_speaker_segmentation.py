"""The speaker segmentation model on real speech: two voices one after the other, and one
voice with a pause, through the model and through a live track that cuts on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captioncast.engine.speaker_segmentation import (
    INSTALL,
    load_segmentation,
    speaker_segmentation,
)
from captioncast.errors import ModelError
from captioncast.speakers.segments import ChangeOptions, change_in
from captioncast.speakers.track import EmbedAsk, SpeakerTrack, TrackOptions
from tests.conftest import read_wav

RATE = 16000


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    found = speaker_segmentation("auto")
    if found is None:
        pytest.skip(f"the speaker segmentation model is not installed ({INSTALL})")
    return found


def two_voices(gap_s: float, reply: float) -> tuple[np.ndarray, float]:
    """A sentence of one speaker, a gap, the first `reply` seconds of another's."""
    first = read_wav("speechbrain_spk1_snt1")
    second = read_wav("arctic_axb_a0006")[:int(reply * RATE)]
    audio = np.concatenate([first, np.zeros(int(gap_s * RATE), np.float32), second])
    return audio, (len(first) + gap_s * RATE) / RATE


def test_a_short_reply_after_a_short_gap_is_another_voice(model) -> None:  # type: ignore[no-untyped-def]
    audio, change = two_voices(0.25, 0.8)
    voices, centres = model.local_speakers(audio)
    span = change_in(voices, centres, 0, ChangeOptions())
    assert span is not None
    assert span[0] / RATE - 0.4 < change < span[1] / RATE + 0.2


def test_one_voice_through_a_pause_is_no_change(model) -> None:  # type: ignore[no-untyped-def]
    one = read_wav("speechbrain_spk1_snt1")
    audio = np.concatenate([one, np.zeros(int(0.3 * RATE), np.float32),
                            read_wav("speechbrain_spk1_snt2")])
    voices, centres = model.local_speakers(audio)
    assert change_in(voices, centres, 0, ChangeOptions()) is None


def test_a_live_track_cuts_the_open_utterance_where_the_reply_begins(model) -> None:  # type: ignore[no-untyped-def]
    audio, change = two_voices(0.25, 1.2)
    track = SpeakerTrack(TrackOptions(), segmenting=True)
    cut = None
    for at in range(0, len(audio), 1600):  # 100 ms chunks, the open utterance from 0
        track.push(audio[at:at + 1600])
        for ask in track.step((0, 0), lambda a, b: np.ones((b - a) // 320, bool)):
            if isinstance(ask, EmbedAsk) and ask.kind == "segment" and cut is None:
                cut = track.segment_done(ask, *model.local_speakers(ask.audio))
    assert cut is not None
    assert change - 0.3 < cut / RATE < change + 0.1


def test_no_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_segmentation(tmp_path / "missing.onnx")
    assert speaker_segmentation("off") is None
