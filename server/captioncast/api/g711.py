"""G.711 (mu-law and A-law, one byte a sample) to pcm_s16le, for telephony audio.

Deepgram's `encoding=mulaw|alaw` and OpenAI Realtime's `audio/pcmu|pcma` formats decode
through these tables before the PCM converter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype("<i2")


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype("<i2")


ULAW = _ulaw_table()
ALAW = _alaw_table()


def g711_decoder(table: np.ndarray) -> Callable[[bytes], bytes]:
    """Bytes of G.711 (one byte a sample) to pcm_s16le, for the PCM converter."""
    def decode(data: bytes) -> bytes:
        return table[np.frombuffer(data, dtype=np.uint8)].tobytes()
    return decode
