"""Enrolled voices: voiceprints from real speech, what counts as enough voice, and how a
roster names a voice from them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from captioncast.engine.speaker_encoder import load_speaker_encoder
from captioncast.errors import NoSpeakerAudio
from captioncast.protocol.events import SpeakerEntry
from captioncast.speakers.enrollment import (
    MIN_VOICE_S,
    EnrolledVoice,
    make_voiceprint,
    voiced_frames,
)
from captioncast.speakers.roster import SpeakerRoster
from tests.conftest import read_wav

RATE = 16000
Embed = Callable[[np.ndarray], np.ndarray]


@pytest.fixture(scope="module")
def embed() -> Embed:
    return load_speaker_encoder("auto").embed


def test_a_voiceprint_is_made_from_the_voice_only(embed: Embed) -> None:
    speech = read_wav("arctic_aew_a0001")
    padded = np.concatenate([np.zeros(3 * RATE, np.float32), speech,
                             np.zeros(3 * RATE, np.float32)])
    plain, seconds = make_voiceprint(speech, embed)
    quiet_edges, padded_seconds = make_voiceprint(padded, embed)
    assert MIN_VOICE_S < seconds == pytest.approx(padded_seconds, abs=0.1)
    assert seconds < len(speech) / RATE  # its pauses are not voice
    assert float(plain @ quiet_edges) > 0.99  # the silence around it changes nothing


@pytest.mark.parametrize(("audio", "says"), [
    (np.zeros(5 * RATE, np.float32), "no voice"),
    (np.random.default_rng(1).normal(0, 1e-4, 5 * RATE).astype(np.float32), "no voice"),
    (read_wav("arctic_aew_a0001")[RATE // 2 : RATE], "only"),
])
def test_silence_and_short_samples_are_refused(embed: Embed, audio: np.ndarray,
                                               says: str) -> None:
    with pytest.raises(NoSpeakerAudio, match=says):
        make_voiceprint(audio, embed)


def test_voiced_frames_of_nothing_is_nothing() -> None:
    assert voiced_frames(np.zeros(10, np.float32)).size == 0


def test_a_voiceprint_survives_the_stores_bytes() -> None:
    print_ = np.random.default_rng(2).normal(size=256).astype(np.float32)
    voice = EnrolledVoice("v_1", "Alice", 1.0, 3.0, print_)
    back = EnrolledVoice.from_voiceprint("v_1", "Alice", 1.0, 3.0, voice.voiceprint())
    assert np.array_equal(back.embedding, print_) and back == voice
    assert "embedding" not in repr(voice) and "0." not in repr(voice).split("seconds")[0]
    assert voice.summary() == {"id": "v_1", "name": "Alice", "created": 1.0, "seconds": 3.0}


def test_a_restored_labels_name_does_not_block_the_enrolled_voice() -> None:
    alice = np.zeros(4, np.float32)
    alice[0] = 1.0
    roster = SpeakerRoster(known=[EnrolledVoice("v", "Alice", 0, 3, alice).known()])
    roster.restore([SpeakerEntry("S1", "Alice")])  # a restarted channel's table
    assigned = roster.assign(alice, voiced_s=3.0)
    assert (assigned.label, assigned.name) == ("S2", "Alice")
    # Heard here, a name is taken: another voice as like it is not named Alice again.
    roster.set_known([])
    assert roster.assign(-alice, voiced_s=3.0).name is None
