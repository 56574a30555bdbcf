"""Where the track cuts: a window unlike the utterance so far, at its quietest moment."""

from __future__ import annotations

import numpy as np

from captioncast.speakers.track import EmbedAsk, Heard, SpeakerTrack, TrackOptions

RATE = 16000


def all_voiced(start: int, end: int) -> np.ndarray:
    return np.ones(max(0, (end - start + 319) // 320), dtype=bool)


def test_windows_come_every_hop_and_an_ended_utterance_is_heard_from_them() -> None:
    track = SpeakerTrack(TrackOptions(window_s=1.5, hop_s=0.5))
    asks: list[EmbedAsk | Heard] = []
    for _ in range(30):  # 3 s of voice in 0.1 s pushes
        track.push(np.full(1600, 0.1, np.float32))
        asks += track.step((0, 0), all_voiced)
    windows = [a for a in asks if isinstance(a, EmbedAsk)]
    assert [round(a.end / RATE, 1) for a in windows] == [1.5, 2.0, 2.5, 3.0]
    assert all(abs(a.voiced_s - 1.5) < 0.05 for a in windows)
    same = np.ones(8, np.float32)
    for ask in windows:
        assert track.window_done(ask, same) is None  # one voice throughout: no cut
    ended = track.step(None, all_voiced)
    assert len(ended) == 1 and isinstance(ended[0], Heard) and ended[0].utterance == 0


def test_another_voice_is_cut_at_the_quiet_moment_between_them() -> None:
    track = SpeakerTrack(TrackOptions(window_s=1.5, hop_s=0.5, change_below=0.5))
    loud, quiet = np.full(1600, 0.2, np.float32), np.full(1600, 0.001, np.float32)
    asks: list[EmbedAsk] = []
    for i in range(40):
        track.push(quiet if i == 27 else loud)  # a dip at 2.7-2.8 s
        asks += [a for a in track.step((0, 0), all_voiced) if isinstance(a, EmbedAsk)]
    first, second = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    cut = None
    for ask in asks:
        # A window is heard as the new voice once most of it is (1 s past the change).
        voice = first if ask.end < int(3.5 * RATE) else second
        cut = cut or track.window_done(ask, voice)
    assert cut is not None and abs(cut / RATE - 2.75) < 0.1


def test_too_little_voice_is_not_embedded() -> None:
    track = SpeakerTrack()
    track.push(np.full(3200, 0.1, np.float32))
    assert track.step((0, 0), lambda s, e: np.zeros((e - s) // 320, dtype=bool)) == []
    assert track.step(None, lambda s, e: np.zeros((e - s) // 320, dtype=bool)) == []


def test_segments_are_asked_every_hop_of_voice_and_once_as_a_pause_begins() -> None:
    track = SpeakerTrack(TrackOptions(segment_first_s=0.8, segment_hop_s=0.5),
                         segmenting=True)
    voice_until = int(1.7 * RATE)  # 1.7 s of voice, then silence

    def voiced(start: int, end: int) -> np.ndarray:
        centres = np.arange(start, end - 319, 320) + 160
        return centres < voice_until

    asked: list[float] = []
    for i in range(25):
        track.push(np.full(1600, 0.1 if i < 17 else 0.0, np.float32))
        asked += [round(a.end / RATE, 1) for a in track.step((0, 0), voiced)
                  if isinstance(a, EmbedAsk) and a.kind == "segment"]
    # At 0.8 s and 1.3 s of voice, then as the pause begins (160 ms into it, at the next
    # 100 ms push): the 0.4 s of voice heard since 1.3 s could be another voice.
    assert asked == [0.8, 1.3, 1.9]
