"""What the compatible-API tests share: one server with a token, and speech as PCM chunks."""

from __future__ import annotations

import wave

import numpy as np

from tests.conftest import speech_path

TOKEN = "compat-secret-token"
CLIP = "whisper_jfk"  # 11 s, four utterances: "And so my fellow Americans, ask not..."
CHUNK_S = 0.1
PACE_S = 0.025  # wall-clock seconds between CHUNK_S chunks: 4x real time, for finals
LIVE_S = CHUNK_S  # real time: what a test of interim results needs on a busy machine


def pcm_chunks(name: str = CLIP, rate: int = 16000, trailing_silence_s: float = 1.0,
               dtype: str = "<i2") -> list[bytes]:
    """The recording as s16le at `rate`, in CHUNK_S chunks, then some silence (so that
    the last utterance ends on a pause, as live speech does)."""
    with wave.open(str(speech_path(name))) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if rate != 16000:
        samples = np.interp(np.arange(0, len(samples), 16000 / rate), np.arange(len(samples)),
                            samples).astype("<i2")
    samples = np.concatenate([samples, np.zeros(int(trailing_silence_s * rate), "<i2")])
    step = int(CHUNK_S * rate)
    return [samples[i:i + step].astype(dtype).tobytes() for i in range(0, len(samples), step)]
