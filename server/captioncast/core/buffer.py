"""A window of the stream's audio addressed by absolute sample position."""

from __future__ import annotations

import numpy as np


class AudioBuffer:
    """Appends chunks, slices by absolute position, forgets what is no longer needed."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._base = 0  # absolute position of the first sample held
        self.end = 0  # absolute position after the last sample held

    def append(self, audio: np.ndarray) -> None:
        if len(audio):
            self._chunks.append(audio)
            self.end += len(audio)

    def _joined(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [
                np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            ]
        return self._chunks[0]

    def slice(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end); positions before what is held come back shorter, not padded."""
        data = self._joined()
        lo = max(start, self._base) - self._base
        hi = max(lo, min(end, self.end) - self._base)
        return data[lo:hi].copy()

    def forget_before(self, position: int) -> None:
        if position <= self._base:
            return
        data = self._joined()
        cut = min(position, self.end) - self._base
        self._chunks = [data[cut:]]
        self._base += cut

    @property
    def start(self) -> int:
        """Absolute position of the first sample still held."""
        return self._base

    @property
    def held(self) -> int:
        return self.end - self._base
