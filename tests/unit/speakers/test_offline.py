"""Clustering a whole file's voices (speakers/offline.py): scripted vectors and real speech."""

from __future__ import annotations

import numpy as np
import pytest

from captioncast.engine.speaker_encoder import load_speaker_encoder
from captioncast.speakers.offline import average_linkage, cluster_voices
from captioncast.speakers.roster import RosterOptions
from tests.conftest import read_wav


def _voice(seed: int, dim: int = 16) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim)
    return vector / np.linalg.norm(vector)


def _near(center: np.ndarray, seed: int, spread: float = 0.15) -> np.ndarray:
    noisy = center + spread * np.random.default_rng(seed).normal(size=len(center)) / 4
    return noisy / np.linalg.norm(noisy)


def test_two_voices_alternating_are_two_labels_in_order_of_appearance() -> None:
    a, b = _voice(1), _voice(2)
    embeddings = [_near(b, 10), _near(a, 11), _near(b, 12), _near(a, 13), _near(b, 14)]
    labels = cluster_voices(embeddings, [2.0] * 5)
    assert labels == ["S1", "S2", "S1", "S2", "S1"]


def test_short_and_missing_voices_follow_without_founding_a_voice() -> None:
    a, b = _voice(1), _voice(2)
    stray = _voice(99)  # a "yes" too short to trust: it joins the nearest voice
    embeddings = [_near(a, 10), None, _near(b, 11), stray, _near(a, 12)]
    labels = cluster_voices(embeddings, [2.0, 0.0, 2.0, 0.4, 2.0])
    assert labels[:3] == ["S1", "S1", "S2"]  # the missing one takes the voice before it
    assert labels[3] in ("S1", "S2") and labels[4] == "S1"


def test_nothing_to_cluster() -> None:
    assert cluster_voices([], []) == []
    assert cluster_voices([None, None], [0.0, 0.0]) == ["S1", "S1"]
    with pytest.raises(ValueError):
        cluster_voices([None], [])


def test_the_threshold_is_the_rosters_same_voice() -> None:
    a = _voice(1)
    apart = _near(a, 5, spread=2.0)
    similarity = float(a @ apart)
    together = RosterOptions(same_voice=similarity - 0.05)
    separate = RosterOptions(same_voice=similarity + 0.05)
    assert cluster_voices([a, apart], [2.0, 2.0], together) == ["S1", "S1"]
    assert cluster_voices([a, apart], [2.0, 2.0], separate) == ["S1", "S2"]


def test_average_linkage_weighs_by_voiced_time() -> None:
    # c is as far from a as from b; a and b are close enough to merge first; the heavy
    # a pulls the merged cluster's distance to c towards its own.
    units = np.eye(3)
    units[1] = np.array([0.8, 0.6, 0.0])
    members = average_linkage(units, np.array([10.0, 1.0, 1.0]), max_distance=0.3)
    assert members[0] == members[1] != members[2]


@pytest.mark.model
def test_real_voices_in_a_conversation() -> None:
    encoder = load_speaker_encoder("auto")
    names = ["arctic_aew_a0001", "arctic_axb_a0004", "arctic_aew_a0002", "arctic_axb_a0006"]
    audio = [read_wav(name) for name in names]
    labels = cluster_voices([encoder.embed(a) for a in audio], [len(a) / 16000 for a in audio])
    assert labels == ["S1", "S2", "S1", "S2"]
