"""Client PCM to the model's input: 16 kHz mono float32, resampled with soxr as it streams."""

from __future__ import annotations

import numpy as np
import soxr

from captioncast.core.params import StreamParams
from captioncast.errors import BadAudio

MODEL_SAMPLE_RATE = 16000


class PcmConverter:
    """Decodes whole-sample PCM frames, downmixes and resamples without gaps between frames."""

    def __init__(self, params: StreamParams) -> None:
        self._params = params
        self._dtype = np.dtype("<i2") if params.encoding == "pcm_s16le" else np.dtype("<f4")
        # multichannel: each channel is its own speaker, kept apart as (samples, channels)
        self._out = params.channels if params.multichannel else 1
        self._resampler = (
            None
            if params.sample_rate == MODEL_SAMPLE_RATE
            else soxr.ResampleStream(
                params.sample_rate, MODEL_SAMPLE_RATE, self._out, dtype="float32",
                quality="HQ")
        )
        self.non_finite_samples = 0

    def convert(self, frame: bytes) -> np.ndarray:
        """One binary frame to 16 kHz mono float32; BadAudio if it is not whole samples."""
        if len(frame) % self._params.bytes_per_frame:
            raise BadAudio(
                f"frame of {len(frame)} bytes is not a whole number of "
                f"{self._params.bytes_per_frame}-byte samples "
                f"({self._params.encoding}, {self._params.channels} channel(s)); frame dropped"
            )
        samples = np.frombuffer(frame, dtype=self._dtype)
        if self._dtype.kind == "i":
            audio = samples.astype(np.float32) / 32768.0
        else:
            audio = samples.astype(np.float32)
            finite = np.isfinite(audio)
            if not finite.all():
                # NaN/inf would poison the resampler and the model: silence them, count them
                self.non_finite_samples += int((~finite).sum())
                audio = np.where(finite, audio, 0.0).astype(np.float32)
            audio = np.clip(audio, -1.0, 1.0)
        if self._out > 1:
            audio = audio.reshape(-1, self._out)
        elif self._params.channels == 2:
            audio = audio.reshape(-1, 2).mean(axis=1, dtype=np.float32)
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        return np.ascontiguousarray(audio, dtype=np.float32)

    def drain(self) -> np.ndarray:
        """What the resampler still holds at end of stream."""
        empty = np.zeros((0, self._out) if self._out > 1 else 0, np.float32)
        if self._resampler is None:
            return empty
        return np.asarray(self._resampler.resample_chunk(empty, last=True), dtype=np.float32)
