"""The turn model: has the speaker finished their turn, or only paused?

Smart Turn v3.2 (pipecat-ai's `smart-turn-v3.2-cpu.onnx`, BSD-2-Clause, a Whisper-tiny
encoder with a classifier head, int8) reads the last 8 s of the turn as Whisper log-mel
and says how likely the turn is complete. Its weights ship inside the `pipecat-ai`
wheel, installed without its dependencies (`pip install --no-deps pipecat-ai==1.14.0`):
the file is found through the distribution's metadata and none of pipecat's Python is
imported (its `__init__` needs loguru, and much more follows).

The preprocessing is pipecat's `LocalSmartTurnAnalyzerV3._predict_endpoint`: keep the
last 8 s, or left-pad with zeros to 8 s (so the end of speech always sits at the right
edge of the window), normalise the waveform to zero mean and unit variance (transformers'
`do_normalize=True`, over the padded 8 s), then Whisper's log-mel (n_fft 400, Hann,
hop 160, 80 Slaney mel bins, log10 clamped to max - 8, (x + 4) / 4, the last frame
dropped), in float64 as pipecat's numpy copy of transformers' extractor computes it,
with faster-whisper's mel filterbank: the same features as pipecat's to 1e-6 or better
and the same probabilities (bench/turn_bench.py checks both). pipecat calls a turn
complete above 0.5.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from captioncast.engine.onnx_cpu import cpu_session
from captioncast.engine.packaged_models import PackagedModel

SAMPLE_RATE = 16000
WINDOW_S = 8  # the model's input: the last 8 s of the turn
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_MELS = 80
N_FFT = 400
HOP = 160
N_FRAMES = WINDOW_SAMPLES // HOP  # 800
THRESHOLD = 0.5  # pipecat's: above it, the turn is complete
# Quieter than this over the window is no voice: nobody is mid-sentence. Digital silence
# would otherwise go through the normalisation's epsilon into features of nothing.
SILENCE_DBFS = -60.0
_NORM_EPS = 1e-7  # transformers' WhisperFeatureExtractor.zero_mean_unit_var_norm

DISTRIBUTION = "pipecat-ai"
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
INSTALL = "pip install --no-deps pipecat-ai==1.14.0"
PACKAGED = PackagedModel("the turn model", DISTRIBUTION, MODEL_FILE, INSTALL)


def turn_features(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32: the model's input for the turn so far (16 kHz mono float32)."""
    audio = _mono(audio)[-WINDOW_SAMPLES:]
    window = np.zeros(WINDOW_SAMPLES, np.float32)
    window[WINDOW_SAMPLES - len(audio):] = audio  # left-padded: speech ends at the right edge
    # In float32, as transformers normalises the padded float32 buffer.
    window = (window - window.mean()) / np.sqrt(window.var() + _NORM_EPS)
    # The spectrogram in float64, as transformers' (and pipecat's copy) computes it:
    # faster-whisper's FeatureExtractor does the same steps in float32, and the int8
    # graph quantizes its activations per run, so a 5e-6 difference in the features
    # moved 5 of 118 probabilities of our set by 0.01 to 0.07.
    padded = np.pad(window.astype(np.float64), N_FFT // 2, mode="reflect")  # centred frames
    frames = sliding_window_view(padded, N_FFT)[::HOP]  # (801, 400)
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2
    log_mel = np.log10(np.maximum(_mel_filters() @ power.T, 1e-10))[:, :-1]  # Whisper drops
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)  # the last frame; 80 dB of range
    features: np.ndarray = ((log_mel + 4.0) / 4.0).astype(np.float32)
    return features


@functools.cache
def _mel_filters() -> np.ndarray:
    """(80, 201) float64: Whisper's Slaney mel filterbank (faster-whisper's, uncast)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    filters: np.ndarray = FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels=N_MELS)
    return filters


@functools.cache
def _hann() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1]  # periodic, as torch.hann_window


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"turn audio must be mono: got shape {audio.shape}")
    return audio


def _silent(audio: np.ndarray) -> bool:
    if not len(audio):
        return True
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return rms <= 10 ** (SILENCE_DBFS / 20)


class TurnModel:
    """Smart Turn v3.2 on onnxruntime, one intra-op thread.

    `complete_probability` may be called from several threads at once: onnxruntime's
    `run` is thread-safe and nothing here changes between calls.
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        # One thread per call: a call is one small encoder pass (pipecat's default too).
        self._session = cpu_session(path, threads)

    def complete_probability(self, audio: np.ndarray) -> float:
        """How likely the turn is complete, 0 to 1, given its audio so far.

        `audio` is 16 kHz mono float32, the turn from its start to now (silence after the
        last word included); only the last 8 s are read. Audio with no voice in that
        window (empty, or quieter than `SILENCE_DBFS`) is 1.0 without running the model:
        nobody is mid-sentence (the model itself says 0.99 to digital silence).
        """
        audio = _mono(audio)[-WINDOW_SAMPLES:]
        if _silent(audio):
            return 1.0
        return self.score_features(turn_features(audio))

    def score_features(self, features: np.ndarray) -> float:
        """P(complete) of `turn_features`' (80, 800) output, the model alone."""
        (probability,) = self._session.run(["logits"], {"input_features": features[None]})
        # The graph ends in a sigmoid although its output is named "logits".
        return float(np.asarray(probability).reshape(-1)[0])


def turn_model_path() -> Path | None:
    """The installed model file, found without importing pipecat."""
    return PACKAGED.installed()


def load_turn_model(path: Path | None = None, threads: int = 1) -> TurnModel:
    """The turn model from `path`, or from the installed `pipecat-ai` wheel."""
    return PACKAGED.open(path or turn_model_path(), lambda found: TurnModel(found, threads))
