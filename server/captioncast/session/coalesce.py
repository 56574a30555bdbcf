"""Tiny audio frames joined into batches before they reach the converter and the session.

Each binary frame costs a conversion, a segmenter step and bookkeeping whatever its size,
so a client sending one-sample frames would cost ~60x the CPU of one sending 100 ms
frames. Frames under MIN_BATCH_S are held until MIN_BATCH_S of audio is there (or a
control message or the end of the stream needs them). That delays nothing a listener
sees: the segmenter decides speech in 20 ms frames anyway.
"""

from __future__ import annotations

MIN_BATCH_S = 0.02  # one segmenter frame


class FrameCoalescer:
    def __init__(self, bytes_per_second: int) -> None:
        self.min_bytes = max(1, int(bytes_per_second * MIN_BATCH_S))
        self._pending: list[bytes] = []
        self._size = 0

    def add(self, frame: bytes) -> bytes | None:
        """Hold `frame`; return a batch once MIN_BATCH_S of audio is held."""
        if not self._pending and len(frame) >= self.min_bytes:
            return frame  # the usual case: no copy
        self._pending.append(frame)
        self._size += len(frame)
        return self.take() if self._size >= self.min_bytes else None

    def take(self) -> bytes:
        """Everything held, in order (empty when nothing is)."""
        batch = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        return batch
