"""The speaker encoders on real speech: whose voice, not what was said."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from captioncast.engine.speaker_encoder import (
    ENCODERS,
    SpeakerEncoder,
    load_speaker_encoder,
)
from captioncast.engine.speaker_features import RESEMBLYZER_MEL, VOICEFILTER_MEL, mel_filterbank
from captioncast.errors import ModelError, NoSpeakerAudio
from tests.conftest import read_wav

RATE = 16000
# Two recordings of each of two SpeechBrain sample speakers (a man and a woman), and a
# third voice: a CMU ARCTIC speaker.
SPK1 = ("speechbrain_spk1_snt1", "speechbrain_spk1_snt3")
SPK2 = ("speechbrain_spk2_snt1", "speechbrain_spk2_snt3")
OTHER = "arctic_aew_a0001"


def encoder_or_skip(name: str) -> SpeakerEncoder:
    source = ENCODERS[name]
    if importlib.util.find_spec(source.package) is None:
        pytest.skip(f"{source.package} is not installed ({source.install})")
    return load_speaker_encoder(name)


@pytest.fixture(scope="module", params=list(ENCODERS))
def encoder(request: pytest.FixtureRequest) -> SpeakerEncoder:
    return encoder_or_skip(request.param)


def test_auto_is_one_of_the_encoders() -> None:
    assert encoder_or_skip("resemblyzer").name in ENCODERS
    assert load_speaker_encoder("auto").name == "resemblyzer"  # bench/RESULTS.md says why


def test_embeddings_are_unit_float32_vectors(encoder: SpeakerEncoder) -> None:
    embedding = encoder.embed(read_wav(SPK1[0]))
    assert embedding.shape == (encoder.dim,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)


def test_the_same_voice_is_closer_than_another_voice(encoder: SpeakerEncoder) -> None:
    a1, a2 = (encoder.embed(read_wav(name)) for name in SPK1)
    b1, b2 = (encoder.embed(read_wav(name)) for name in SPK2)
    other = encoder.embed(read_wav(OTHER))
    for same, crossed in ((a1 @ a2, a1 @ b1), (b1 @ b2, b2 @ a2), (a1 @ a2, a2 @ other)):
        assert same > crossed + 0.1


def test_two_crops_of_one_recording_are_closer_than_another_speaker(
        encoder: SpeakerEncoder) -> None:
    audio = read_wav("libri_dev_2412-153948-0000")  # 11.7 s of one reader
    first, second = encoder.embed(audio[:3 * RATE]), encoder.embed(audio[5 * RATE:8 * RATE])
    other = encoder.embed(read_wav(SPK2[0]))
    assert first @ second > max(first @ other, second @ other) + 0.1


def test_silence_and_too_short_audio_are_refused(encoder: SpeakerEncoder) -> None:
    with pytest.raises(NoSpeakerAudio, match="silence"):
        encoder.embed(np.zeros(3 * RATE, np.float32))
    with pytest.raises(NoSpeakerAudio, match="too short"):
        encoder.embed(read_wav(SPK1[0])[:encoder.min_samples - 1])
    with pytest.raises(NoSpeakerAudio, match="mono"):
        encoder.embed(np.zeros((2, 3 * RATE), np.float32))
    # min_samples itself is enough
    assert encoder.embed(read_wav(SPK1[0])[:encoder.min_samples]).shape == (encoder.dim,)


def test_windows_have_one_embedding_per_voiced_window(encoder: SpeakerEncoder) -> None:
    speech = read_wav("libri_dev_2412-153948-0000")[:6 * RATE]
    audio = np.concatenate([speech, np.zeros(3 * RATE, np.float32)])  # 9 s, the last 3 silent
    embeddings, centres = encoder.embed_windows(audio, window_s=1.5, hop_s=0.75)
    # 11 windows fit in 9 s; the three wholly in the silence (from 6 s on) are left out
    assert embeddings.shape == (8, encoder.dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(centres, 0.75 + 0.75 * np.arange(8))
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # a window is embedded as `embed` embeds the same audio
    np.testing.assert_allclose(embeddings[2], encoder.embed(audio[RATE * 3 // 2:RATE * 3]),
                               atol=1e-4)


def test_windows_of_audio_shorter_than_one_window(encoder: SpeakerEncoder) -> None:
    audio = read_wav(SPK2[0])  # 2.0 s
    embeddings, centres = encoder.embed_windows(audio, window_s=3.0, hop_s=1.0)
    assert embeddings.shape == (1, encoder.dim)
    assert centres == pytest.approx([len(audio) / RATE / 2])
    with pytest.raises(NoSpeakerAudio, match="too short"):
        encoder.embed_windows(audio, window_s=0.5, hop_s=0.25)
    silent, where = encoder.embed_windows(np.zeros(4 * RATE, np.float32), 1.5, 0.75)
    assert silent.shape == (0, encoder.dim) and where.shape == (0,)


def test_concurrent_embeds_agree_with_serial_ones(encoder: SpeakerEncoder) -> None:
    clips = [read_wav(name) for name in (*SPK1, *SPK2)]
    serial = [encoder.embed(clip) for clip in clips]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(encoder.embed, clips * 2))
    for got, want in zip(parallel, serial * 2):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_an_unknown_or_missing_encoder_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="no speaker encoder 'ecapa'"):
        load_speaker_encoder("ecapa")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps resemblyzer==0\.1\.4"):
        load_speaker_encoder("resemblyzer")


def test_the_mel_frontends_keep_librosas_conventions() -> None:
    # librosa.filters.mel(sr=16000, n_fft=512, n_mels=40), Slaney scale and area: values
    # printed by librosa 0.11 (the frontends match its melspectrogram to 1e-6 in log10)
    filters = mel_filterbank(RATE, 512, 40)
    assert filters.shape == (40, 257)
    assert filters[0, 1] == pytest.approx(0.005773601, rel=1e-5)
    assert int(np.argmax(filters[0])) == 2 and int(np.argmax(filters[-1])) == 237
    assert VOICEFILTER_MEL.frames_in(RATE) == len(VOICEFILTER_MEL.power_mel(np.ones(RATE))) == 97
    assert RESEMBLYZER_MEL.frames_in(RATE) == len(RESEMBLYZER_MEL.power_mel(np.ones(RATE))) == 101


def test_reading_a_checkpoint_refuses_what_is_not_a_state_dict(tmp_path: Path) -> None:
    import pickle

    from captioncast.engine.torch_checkpoint import load_state_dict

    bogus = tmp_path / "evil.pt"
    bogus.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001)
                      + pickle.dumps({"little_endian": True}) + pickle.dumps(Path("/")))
    with pytest.raises(pickle.UnpicklingError, match=r"pathlib\..*Path"):
        load_state_dict(bogus)
