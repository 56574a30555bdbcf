"""Who spoke, for a file: each final's voice embedded as it is decided, labelled at the end.

A file's answer waits for its last final anyway, so its speakers are clustered over the
whole file (speakers/offline.py) instead of online as a live session must: the first
utterances are labelled knowing every voice that comes later. Only the audio of the
utterance being decided is kept (a file may be hours long); its voiced frames, as the
session's VAD heard them, go to the speaker encoder on the shared scheduler.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import NoSpeakerAudio
from captioncast.protocol.events import Final
from captioncast.session.speaker_stage import Embedder
from captioncast.speakers.offline import cluster_voices
from captioncast.speakers.roster import RosterOptions

log = logging.getLogger("captioncast.speakers")
FRAME = MODEL_SAMPLE_RATE // 50  # the VAD's 20 ms frame
MIN_VOICE_S = 0.3  # less voice than this says nothing of who it is (as live)
# A file is background work: its embeddings are due later than any live final's, so a
# live session's labels and decodes go first when they compete for the model threads.
FILE_EMBED_BUDGET_S = 2.0
VoicedMask = Callable[[int, int], np.ndarray]


class FileSpeakers:
    def __init__(self, owner: str, scheduler: DecodeScheduler, embedder: Embedder,
                 voiced: VoicedMask, options: RosterOptions | None = None) -> None:
        self.owner = owner
        self.scheduler = scheduler
        self.embedder = embedder
        self.voiced = voiced
        self.options = options or RosterOptions()
        self._audio = np.zeros(0, np.float32)
        self._audio_start = 0  # the sample `_audio[0]` is, from the file's start
        self._asked: dict[int, tuple[asyncio.Future[np.ndarray] | None, float]] = {}

    def push(self, audio: np.ndarray) -> None:
        """Audio about to be fed to the session (16 kHz float32)."""
        self._audio = np.concatenate([self._audio, audio.astype(np.float32, copy=False)])

    def final(self, final: Final) -> None:
        """A final was decided: embed its voiced audio, and forget the audio before it."""
        start = round(final.start * MODEL_SAMPLE_RATE)
        end = round(final.end * MODEL_SAMPLE_RATE)
        future: asyncio.Future[np.ndarray] | None = None
        voice = self._voice(start, end)
        voiced_s = len(voice) / MODEL_SAMPLE_RATE
        if final.text and voiced_s >= MIN_VOICE_S:
            future = self.scheduler.submit_call(
                self.owner, -(final.utterance + 1),
                functools.partial(self.embedder.embed, voice), FILE_EMBED_BUDGET_S)
        self._asked[final.utterance] = (future, voiced_s)
        # Utterances follow one another: nothing before this one's end is needed again.
        drop = max(0, min(end, self._audio_start + len(self._audio)) - self._audio_start)
        self._audio = self._audio[drop:]
        self._audio_start += drop

    def _voice(self, start: int, end: int) -> np.ndarray:
        lo = max(start, self._audio_start)
        audio = self._audio[lo - self._audio_start:max(lo, end) - self._audio_start]
        if len(audio) < FRAME:
            return audio[:0]
        mask = self.voiced(lo, lo + len(audio))[:len(audio) // FRAME]
        frames = np.flatnonzero(mask)
        if not len(frames):
            return audio[:0]
        voice: np.ndarray = audio[(frames[:, None] * FRAME + np.arange(FRAME)).reshape(-1)]
        return voice

    async def labels(self, utterances: list[int]) -> list[str]:
        """A label for each of `utterances` (those with text, in order), over the file."""
        embeddings: list[np.ndarray | None] = []
        voiced: list[float] = []
        for utterance in utterances:
            future, voiced_s = self._asked.get(utterance, (None, 0.0))
            embedding = None
            if future is not None:
                try:
                    embedding = await future
                except NoSpeakerAudio as error:  # shorter than the encoder's window
                    log.debug("event=speaker_too_short owner=%s utterance=%d error=%s",
                              self.owner, utterance, error)
                except Exception as error:  # one lost voice must not lose the transcript
                    log.warning("event=speaker_embedding_failed owner=%s error=%r",
                                self.owner, error)
            embeddings.append(embedding)
            voiced.append(voiced_s)
        return cluster_voices(embeddings, voiced, self.options)

    def close(self) -> None:
        for future, _ in self._asked.values():
            if future is not None and not future.done():
                future.cancel()
        self._asked.clear()
