"""Enrolled voices: a name and a voiceprint made from a short sample of that voice.

A voiceprint is personal data: it is kept out of reprs and logs, leaves the server never
(listings carry id, name, created and seconds only), and is deleted on request. Pure:
audio in, a voiceprint out through the `embed` the caller gives (the server's encoder,
run on the scheduler's threads).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import webrtcvad

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.errors import NoSpeakerAudio
from captioncast.speakers.roster import KnownVoice

MIN_VOICE_S = 1.5  # less voice than this makes a voiceprint too noisy to name anyone by
MAX_SAMPLE_S = 120.0  # of a longer sample only the first two minutes are heard
FRAME = MODEL_SAMPLE_RATE * 30 // 1000  # webrtcvad's longest frame, 30 ms
VAD_MODE = 2  # webrtcvad's aggressiveness: as the live segmenter's default
QUIET_RMS = 0.002  # frames quieter than this (about -54 dBFS) are never voice
HANGOVER = 3  # frames kept either side of voice: word onsets and tails are voice too


@dataclass(frozen=True)
class EnrolledVoice:
    """A voice the server names wherever it hears it (RosterOptions.known_voice)."""

    id: str
    name: str
    created: float  # wall clock
    seconds: float  # of voice in the sample
    embedding: np.ndarray = field(repr=False, compare=False)  # the voiceprint

    def known(self) -> KnownVoice:
        return KnownVoice(self.name, self.embedding)

    def summary(self) -> dict[str, Any]:
        """What a listing says of it: never the voiceprint."""
        return {"id": self.id, "name": self.name, "created": round(self.created, 3),
                "seconds": round(self.seconds, 2)}

    def voiceprint(self) -> bytes:
        """The voiceprint as little-endian float32 bytes, as the store keeps it."""
        return np.asarray(self.embedding, dtype="<f4").tobytes()

    @classmethod
    def from_voiceprint(cls, voice_id: str, name: str, created: float, seconds: float,
                        data: bytes) -> EnrolledVoice:
        return cls(voice_id, name, created, seconds,
                   np.frombuffer(data, dtype="<f4").astype(np.float32))


def new_voice_id() -> str:
    return "v_" + secrets.token_hex(8)


def voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Per 30 ms frame of 16 kHz float32 `audio`: whether it is voice (webrtcvad, widened
    by `HANGOVER` frames so that soft onsets and word tails stay with their words)."""
    n = len(audio) // FRAME
    if n == 0:
        return np.zeros(0, dtype=bool)
    frames = audio[: n * FRAME].reshape(n, FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
    vad = webrtcvad.Vad(VAD_MODE)
    voiced = np.array([bool(rms[i] >= QUIET_RMS)
                       and vad.is_speech(pcm[i].tobytes(), MODEL_SAMPLE_RATE)
                       for i in range(n)], dtype=bool)
    if voiced.any():
        kernel = np.ones(2 * HANGOVER + 1)
        voiced = np.convolve(voiced.astype(float), kernel, mode="same") > 0
    return voiced


def make_voiceprint(audio: np.ndarray,
                    embed: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, float]:
    """The voiceprint of a sample and the seconds of voice it was made from.

    Only the voiced frames are embedded: the pauses of a read sentence would pull the
    print towards silence. NoSpeakerAudio (a BadAudio: 400) for silence or under
    `MIN_VOICE_S` of voice. Blocking: run it on the scheduler's threads.
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)[: int(MAX_SAMPLE_S
                                                                  * MODEL_SAMPLE_RATE)]
    voiced = voiced_frames(audio)
    seconds = float(voiced.sum()) * FRAME / MODEL_SAMPLE_RATE
    if seconds < MIN_VOICE_S:
        heard = "no voice" if seconds == 0 else f"only {seconds:.1f} s of voice"
        raise NoSpeakerAudio(f"the sample has {heard} in {len(audio) / MODEL_SAMPLE_RATE:.1f} s "
                             f"of audio: enrolling needs at least {MIN_VOICE_S} s of one "
                             "person speaking")
    speech = audio[: len(voiced) * FRAME].reshape(len(voiced), FRAME)[voiced].reshape(-1)
    return np.asarray(embed(speech), dtype=np.float32), seconds
