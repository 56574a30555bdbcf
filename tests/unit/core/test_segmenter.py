import numpy as np

from captioncast.core.segmenter import (
    Segmenter,
    SegmenterOptions,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
)
from tests.conftest import read_wav


def _boundaries(audio: np.ndarray, options: SegmenterOptions | None = None) -> list[object]:
    segmenter = Segmenter(options)
    out: list[object] = []
    for i in range(0, len(audio), 1600):
        out.extend(segmenter.push(audio[i : i + 1600]))
    end = segmenter.force_end()
    if end:
        out.append(end)
    return out


def test_silence_and_white_noise_never_start_speech() -> None:
    rng = np.random.default_rng(1)
    assert _boundaries(np.zeros(16000 * 10, np.float32)) == []
    for level in (0.01, 0.1, 0.3):
        noise = (rng.standard_normal(16000 * 10) * level).astype(np.float32)
        assert [b for b in _boundaries(noise) if isinstance(b, SpeechStart)] == []


def test_real_speech_is_cut_into_utterances_at_pauses() -> None:
    audio = np.concatenate([np.zeros(8000, np.float32), read_wav("whisper_jfk")])
    out = _boundaries(audio)
    starts = [b for b in out if isinstance(b, SpeechStart)]
    ends = [b for b in out if isinstance(b, SpeechEnd)]
    assert len(starts) == len(ends) >= 2
    # the pre-roll reaches back before the first voiced frame, never before the stream began
    assert 0 <= starts[0].sample < 8000 + 16000
    for start, end in zip(starts, ends):
        assert end.speech_end > start.sample
    for end, next_start in zip(ends, starts[1:]):
        assert next_start.sample >= end.speech_end  # utterances never overlap


def test_a_pause_is_announced_before_the_end() -> None:
    out = _boundaries(read_wav("whisper_jfk"))
    first_end = next(i for i, b in enumerate(out) if isinstance(b, SpeechEnd))
    assert any(isinstance(b, SpeechPause) for b in out[:first_end])


def test_speech_without_pauses_is_cut_at_the_maximum_length() -> None:
    options = SegmenterOptions(max_utterance_s=4.0, cut_search_s=2.0, end_hangover_s=5.0,
                               long_utterance_s=60.0)
    audio = read_wav("libri_dev_2412-153948-0000")
    out = _boundaries(audio, options)
    cuts = [b for b in out if isinstance(b, SpeechEnd) and b.continues]
    assert cuts
    starts = [b.sample for b in out if isinstance(b, SpeechStart)]
    for cut in cuts:
        assert cut.speech_end - starts[0] <= 4.0 * 16000 * (cuts.index(cut) + 1)


def test_voiced_mask_covers_the_utterance() -> None:
    segmenter = Segmenter()
    audio = read_wav("whisper_jfk")
    segmenter.push(audio)
    mask = segmenter.voiced_mask(0, len(audio))
    assert mask.any() and not mask.all()
    assert abs(len(mask) - len(audio) // segmenter.frame_len) <= 1


def test_a_flush_in_silence_is_a_boundary_the_next_pre_roll_stays_behind() -> None:
    """A manual turn's commit: the next utterance takes nothing from before it."""
    segmenter = Segmenter()
    speech = read_wav("whisper_jfk")
    flushed_at = 16000 // 10  # 0.1 s of silence, then the flush, then speech at once
    segmenter.push(np.zeros(flushed_at, np.float32))
    assert segmenter.force_end() is None
    starts = [b for b in segmenter.push(speech) if isinstance(b, SpeechStart)]
    assert starts and starts[0].sample >= flushed_at
    unflushed = Segmenter()
    unflushed.push(np.zeros(flushed_at, np.float32))
    first = next(b for b in unflushed.push(speech) if isinstance(b, SpeechStart))
    assert first.sample < flushed_at  # without it, the pre-roll reaches into the silence
