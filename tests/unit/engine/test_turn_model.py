"""The turn model on real speech: a finished sentence against one stopped mid-way."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from captioncast.engine import turn_model
from captioncast.engine.turn_model import (
    INSTALL,
    SAMPLE_RATE,
    TurnModel,
    load_turn_model,
    turn_features,
    turn_model_path,
)
from captioncast.errors import ModelError
from tests.conftest import read_wav

# Where each sentence is cut, mid-sentence, right after a function word: the quietest
# 10 ms between that word and the next by faster-whisper's word timings (tiny.en, beam
# 5), as bench/turn_set.py cuts them.
CUTS = {
    "arctic_aew_a0001": ("Author of the | danger trail, Philip Steels, etc.", 0.975),
    "arctic_aew_a0003": ("For the twentieth time that | evening the two men shook hands.",
                         1.785),
}
# The model is asked 0.2 s into a pause, as a live VAD would ask it.
HEARD_SILENCE = np.zeros(int(0.2 * SAMPLE_RATE), np.float32)


@pytest.fixture(scope="module")
def model() -> TurnModel:
    if turn_model_path() is None:
        pytest.skip(f"the turn model is not installed ({INSTALL})")
    return load_turn_model()


@pytest.mark.parametrize("name", list(CUTS))
def test_a_finished_sentence_scores_higher_than_one_cut_after_a_function_word(
        model: TurnModel, name: str) -> None:
    audio = read_wav(name)
    _, cut_s = CUTS[name]
    whole = model.complete_probability(np.concatenate([audio, HEARD_SILENCE]))
    cut = model.complete_probability(
        np.concatenate([audio[:int(cut_s * SAMPLE_RATE)], HEARD_SILENCE]))
    assert whole > 0.9 and cut < 0.2, (whole, cut)  # 0.97 / 0.10 and 0.95 / 0.02 measured


def test_features_are_80_mel_bins_by_800_frames_whatever_the_length() -> None:
    audio = read_wav("arctic_aew_a0001")
    for clip in (audio[:1600], audio, np.tile(audio, 3)):  # 0.1 s, 3.9 s, 11.6 s
        features = turn_features(clip)
        assert features.shape == (80, 800) and features.dtype == np.float32
        assert np.isfinite(features).all()


def test_short_turns_are_left_padded_so_speech_ends_at_the_window_s_right_edge() -> None:
    audio = read_wav("arctic_aew_a0001")
    padded = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), audio])
    np.testing.assert_array_equal(turn_features(audio), turn_features(padded))
    # The speech is in the last frames, the zeros in the first: their log-mel is the floor.
    features = turn_features(audio)
    assert features[:, :100].max() == features.min()
    assert features[:, -300:].max() > features.min() + 1.0


def test_only_the_last_8_seconds_are_read() -> None:
    long = np.tile(read_wav("arctic_aew_a0001"), 3)
    np.testing.assert_array_equal(turn_features(long), turn_features(long[-8 * SAMPLE_RATE:]))


def test_silence_and_no_audio_are_a_complete_turn(model: TurnModel) -> None:
    # Nobody is mid-sentence; the model is not run (it says 0.99 to zeros itself).
    assert model.complete_probability(np.zeros(0, np.float32)) == 1.0
    assert model.complete_probability(np.zeros(3 * SAMPLE_RATE, np.float32)) == 1.0
    hiss = np.random.default_rng(0).normal(0, 1e-4, 2 * SAMPLE_RATE).astype(np.float32)
    assert model.complete_probability(hiss) == 1.0  # -80 dBFS


def test_a_turn_with_8_s_of_silence_after_its_words_is_silence(model: TurnModel) -> None:
    audio = read_wav("arctic_aew_a0001")[:int(0.975 * SAMPLE_RATE)]
    long_pause = np.concatenate([audio, np.zeros(8 * SAMPLE_RATE, np.float32)])
    assert model.complete_probability(long_pause) == 1.0


def test_stereo_is_refused(model: TurnModel) -> None:
    with pytest.raises(ValueError, match="mono"):
        model.complete_probability(np.zeros((2, SAMPLE_RATE), np.float32))


def test_calls_from_several_threads_agree_with_one_thread(model: TurnModel) -> None:
    audio = read_wav("arctic_aew_a0003")
    clips = [audio[:end] for end in range(SAMPLE_RATE, len(audio), SAMPLE_RATE // 2)]
    alone = [model.complete_probability(clip) for clip in clips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(model.complete_probability, clips))
    assert together == alone
    assert all(0.0 <= p <= 1.0 for p in alone)


def test_a_missing_model_is_a_model_error_that_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(turn_model, "turn_model_path", lambda: None)
    with pytest.raises(ModelError, match="pip install --no-deps pipecat-ai"):
        load_turn_model()
    with pytest.raises(ModelError, match="does not exist"):
        load_turn_model(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        load_turn_model(broken)
