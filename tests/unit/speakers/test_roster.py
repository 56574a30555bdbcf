"""The roster's rules on embeddings made to order (the real encoder's are tested in
tests/unit/engine and, end to end, tests/integration/test_speakers.py)."""

from __future__ import annotations

import numpy as np
import pytest

from captioncast.speakers.roster import KnownVoice, RosterOptions, SpeakerRoster, UnknownSpeaker


def voice(seed: int, near: np.ndarray | None = None, spread: float = 0.3) -> np.ndarray:
    """A unit vector; with `near`, one that close to it (cosine about 1 - spread**2 / 2)."""
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=64)
    if near is not None:
        vector = near / np.linalg.norm(near) + spread * vector / np.linalg.norm(vector)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def test_labels_follow_first_appearance_and_a_voice_keeps_its_label() -> None:
    roster = SpeakerRoster()
    alice, bob = voice(1), voice(2)
    assert roster.assign(alice, 3.0).label == "S1"
    assert roster.assign(bob, 3.0).label == "S2"
    assert roster.assign(voice(3, near=alice), 2.0).label == "S1"
    assert roster.assign(voice(4, near=bob), 2.0).label == "S2"
    assert [e.id for e in roster.table()] == ["S1", "S2"]


def test_a_short_utterance_goes_to_the_nearest_voice_without_moving_it() -> None:
    roster = SpeakerRoster(RosterOptions(reliable_s=1.0))
    alice = voice(1)
    roster.assign(alice, 3.0)
    before = roster.voices[0].total.copy()
    assert roster.assign(voice(9), 0.4).label == "S1"  # too short to found a voice
    assert np.array_equal(roster.voices[0].total, before)


def test_names_merges_and_unknown_labels() -> None:
    roster = SpeakerRoster(RosterOptions(same_voice=0.99, merge=0.9))
    alice = voice(1)
    roster.assign(alice, 3.0)
    version = roster.version
    roster.name("S1", "Alice")
    assert roster.version > version and roster.display_name("S1") == "Alice"
    # Unlike enough to found S2, alike enough to merge into S1 as S2 grows.
    roster.assign(voice(2, near=alice, spread=0.2), 3.0)
    roster.assign(voice(3, near=alice, spread=0.05), 3.0)
    table = {e.id: e for e in roster.table()}
    if "S2" in table:
        assert table["S2"].same_as in (None, "S1")
        if table["S2"].same_as == "S1":
            assert roster.display_name("S2") == "Alice"
    with pytest.raises(UnknownSpeaker):
        roster.name("S7", "Nobody")


def test_an_enrolled_voice_names_its_label_at_once() -> None:
    carol = voice(5)
    roster = SpeakerRoster(known=[KnownVoice("Carol", carol)])
    first = roster.assign(voice(6, near=carol, spread=0.2), 3.0)
    assert first.name == "Carol"
    assert roster.assign(voice(7), 3.0).name is None


def test_a_restored_table_continues_its_labels() -> None:
    roster = SpeakerRoster()
    from captioncast.protocol.events import SpeakerEntry
    roster.restore([SpeakerEntry("S1", "Alice"), SpeakerEntry("S2")])
    assert roster.assign(voice(1), 3.0).label == "S3"
    assert roster.display_name("S1") == "Alice"


def test_a_wordless_first_final_does_not_take_a_label_from_the_first_voice() -> None:
    roster = SpeakerRoster()
    first = roster.assign(np.zeros(0, np.float32), 0.0)  # a final of noise, no voice
    assert first.label == "S1"
    assert roster.assign(voice(1), 3.0).label == "S1"  # the first real voice is S1
    assert roster.assign(voice(2), 3.0).label == "S2"
