import numpy as np
import pytest

from captioncast.core.audio import PcmConverter
from captioncast.core.params import StreamParams
from captioncast.errors import BadAudio


def test_s16le_at_16k_passes_through_scaled() -> None:
    converter = PcmConverter(StreamParams())
    pcm = np.array([0, 16384, -32768], dtype="<i2").tobytes()
    assert np.allclose(converter.convert(pcm), [0.0, 0.5, -1.0])


def test_odd_byte_count_is_bad_audio() -> None:
    converter = PcmConverter(StreamParams())
    with pytest.raises(BadAudio, match="not a whole number"):
        converter.convert(b"\x00\x01\x02")


def test_stereo_needs_whole_sample_pairs_and_is_downmixed() -> None:
    converter = PcmConverter(StreamParams(channels=2))
    with pytest.raises(BadAudio):
        converter.convert(b"\x00\x00\x00\x00\x00\x00")  # 1.5 stereo frames
    pcm = np.array([16384, 0, 16384, 0], dtype="<i2").tobytes()
    assert np.allclose(converter.convert(pcm), [0.25, 0.25])


def test_resampling_keeps_duration_across_chunks() -> None:
    converter = PcmConverter(StreamParams(sample_rate=48000, encoding="pcm_f32le"))
    t = np.arange(48000 * 2) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("<f4")
    out = [converter.convert(chunk.tobytes()) for chunk in np.array_split(tone, 37)]
    out.append(converter.drain())
    total = sum(len(o) for o in out)
    assert abs(total - 32000) <= 2


def test_non_finite_floats_are_silenced_and_counted() -> None:
    converter = PcmConverter(StreamParams(encoding="pcm_f32le"))
    pcm = np.array([0.5, np.nan, np.inf, -2.0], dtype="<f4").tobytes()
    out = converter.convert(pcm)
    assert np.all(np.isfinite(out))
    assert converter.non_finite_samples == 2
    assert out.min() >= -1.0
