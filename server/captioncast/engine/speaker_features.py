"""The speaker encoders' mel frontends in numpy, so neither needs librosa at run time.

Both encoders were trained on `librosa.feature.melspectrogram` features (Slaney mel
scale, Slaney area normalisation, power 2): `mel_filterbank` is librosa's
`filters.mel(htk=False, norm="slaney")` and `power_spectrogram` its `stft` framing
(a window shorter than `n_fft` is centred in it, `center=True` pads with zeros as
librosa >= 0.10 does). Each encoder's own settings are in `VOICEFILTER_MEL` and
`RESEMBLYZER_MEL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

SAMPLE_RATE = 16000

# Slaney's mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above.
_MEL_LINEAR_HZ = 200.0 / 3
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
_MEL_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _MEL_LINEAR_HZ
    above = _MEL_BREAK + np.log(np.maximum(hz, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return np.where(hz >= _MEL_BREAK_HZ, above, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _MEL_LINEAR_HZ
    above = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (np.maximum(mel, _MEL_BREAK) - _MEL_BREAK))
    return np.where(mel >= _MEL_BREAK, above, linear)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangles on the Slaney scale, each of unit area."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def periodic_window(kind: str, length: int) -> np.ndarray:
    """scipy's `get_window(kind, length, fftbins=True)`: the window an STFT expects."""
    if kind == "hann":
        return np.hanning(length + 1)[:-1]
    if kind == "hamming":
        return np.hamming(length + 1)[:-1]
    raise ValueError(f"no window {kind!r}")


@dataclass(frozen=True)
class MelFrontend:
    """One encoder's mel spectrogram: 16 kHz mono in, (frames, n_mels) power mel out."""

    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    window: str
    center: bool

    @cached_property
    def _filters(self) -> np.ndarray:
        return mel_filterbank(SAMPLE_RATE, self.n_fft, self.n_mels)

    @cached_property
    def _window(self) -> np.ndarray:
        window = np.zeros(self.n_fft)
        offset = (self.n_fft - self.win_length) // 2
        window[offset:offset + self.win_length] = periodic_window(self.window, self.win_length)
        return window

    def frames_in(self, n_samples: int) -> int:
        """How many frames `power_mel` makes of `n_samples` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return max(0, 1 + (n_samples - self.n_fft) // self.hop_length)

    def power_mel(self, audio: np.ndarray) -> np.ndarray:
        """(frames, n_mels) float32 mel power spectrogram (not log)."""
        audio = np.asarray(audio, dtype=np.float64)
        if self.center:
            audio = np.pad(audio, self.n_fft // 2)
        if len(audio) < self.n_fft:
            return np.zeros((0, self.n_mels), dtype=np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(audio, self.n_fft)[::self.hop_length]
        power: np.ndarray = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        mel: np.ndarray = power.astype(np.float32) @ self._filters.T
        return mel


# open-voicefilter-lite's `_extract_dvec`: 32 ms FFT of a 25 ms Hamming window, no padding.
VOICEFILTER_MEL = MelFrontend(n_fft=512, win_length=400, hop_length=160, n_mels=40,
                              window="hamming", center=False)
# Resemblyzer's `wav_to_mel_spectrogram`: librosa's defaults but for a 25 ms FFT.
RESEMBLYZER_MEL = MelFrontend(n_fft=400, win_length=400, hop_length=160, n_mels=40,
                              window="hann", center=True)
