"""Voice activity segmentation: webrtcvad frames in, utterance boundaries out.

Works in absolute sample positions at 16 kHz so that every later stage (decode
windows, word timings, caption times) shares one audio clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from captioncast.core.audio import MODEL_SAMPLE_RATE


@dataclass(frozen=True)
class SegmenterOptions:
    frame_ms: int = 20  # webrtcvad accepts 10, 20 or 30 ms; 20 balances noise and reaction time
    aggressiveness: int = 2  # 3 clips soft word onsets; noise is handled by the flatness gate
    start_window_frames: int = 5
    start_voiced_frames: int = 3  # 60 ms of voice in 100 ms: clicks and taps do not start speech
    pre_roll_s: float = 0.3  # the VAD fires late on soft consonants; keep what came before
    end_hangover_s: float = 0.5  # shorter splits sentences at commas and breaths
    speculate_after_s: float = 0.2  # start decoding the final early; dropped if speech resumes
    # Continuous speech (a lecture) is cut at its real pauses early enough that finals stay
    # cheap and punctual: past `long_utterance_s` a shorter pause ends the utterance, and a
    # forced cut looks back only `cut_search_s`, since a final ends where it is cut and is
    # late by as much (bench/policy_sim.py --subset continuous: p95 2.5 s -> 0.6 s of audio,
    # WER 0.161 -> 0.139, measured with 5 s here). At 5 s the last word of a counted
    # sequence became an utterance of its own, too short for language detection.
    long_utterance_s: float = 8.0
    long_hangover_s: float = 0.25
    max_utterance_s: float = 12.0  # captions must appear even when nobody pauses
    cut_search_s: float = 1.5  # where to look back for the quietest point to cut at
    # Spectral flatness: white noise ~0.56, vowels < 0.1. Gate only the onset so fricatives
    # inside words still count as speech, while hiss and fans never start an utterance.
    max_onset_flatness: float = 0.35
    min_onset_rms: float = 1e-3  # -60 dBFS: near-digital silence is never speech


@dataclass(frozen=True)
class SpeechStart:
    sample: int


@dataclass(frozen=True)
class SpeechPause:
    """Silence began after speech; the final may be decoded speculatively up to `sample`."""

    speech_end: int


@dataclass(frozen=True)
class SpeechResume:
    pass


@dataclass(frozen=True)
class SpeechEnd:
    """The utterance ends at `speech_end`; if `continues`, the next starts there at once."""

    speech_end: int
    continues: bool = False


Boundary = SpeechStart | SpeechPause | SpeechResume | SpeechEnd


def spectral_flatness(frame: np.ndarray) -> float:
    """Geometric over arithmetic mean of the power spectrum, 100 Hz to 4 kHz."""
    spectrum = np.abs(np.fft.rfft(frame * np.hanning(len(frame)))) ** 2
    bins = spectrum[len(frame) * 100 // MODEL_SAMPLE_RATE : len(frame) * 4000 // MODEL_SAMPLE_RATE]
    bins = bins + 1e-12
    return float(np.exp(np.mean(np.log(bins))) / np.mean(bins))


class Segmenter:
    """Feeds 16 kHz float32 audio through webrtcvad and reports utterance boundaries."""

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        self.options = options or SegmenterOptions()
        self._vad = webrtcvad.Vad(self.options.aggressiveness)
        self.frame_len = MODEL_SAMPLE_RATE * self.options.frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.float32)
        self.position = 0  # samples consumed into whole frames
        self.in_speech = False
        self._onset: deque[bool] = deque(maxlen=self.options.start_window_frames)
        self._utterance_start = 0
        self._last_voiced_end = 0
        self._silence = 0
        self._paused = False
        self._previous_end = 0
        self.onset = 0
        # Per-frame voicing and energy of the recent past, for word filtering and cuts.
        self._history_frames = int(
            (self.options.max_utterance_s * 3 + 10) * 1000 / self.options.frame_ms
        )
        self._voiced: deque[bool] = deque(maxlen=self._history_frames)
        self._rms: deque[float] = deque(maxlen=self._history_frames)

    def _seconds(self, seconds: float) -> int:
        return int(seconds * MODEL_SAMPLE_RATE)

    def push(self, audio: np.ndarray) -> list[Boundary]:
        """Consume audio; return the boundaries it crossed, in order."""
        self._pending = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        boundaries: list[Boundary] = []
        n_frames = len(self._pending) // self.frame_len
        if n_frames:
            # Energy and 16-bit samples for all the chunk's frames at once: a silent
            # session's cost is this loop, and numpy per 20 ms frame made it 5x dearer.
            frames = self._pending[: n_frames * self.frame_len].reshape(n_frames, -1)
            rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
            loud = rms >= self.options.min_onset_rms / 4  # quieter is never speech
            pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2") if loud.any() else None
            for i in range(n_frames):
                voiced = bool(loud[i]) and pcm is not None and self._vad.is_speech(
                    pcm[i].tobytes(), MODEL_SAMPLE_RATE)
                boundaries.extend(self._frame(frames[i], float(rms[i]), voiced))
        self._pending = self._pending[n_frames * self.frame_len :].copy()
        return boundaries

    def _frame(self, frame: np.ndarray, rms: float, voiced: bool) -> list[Boundary]:
        opts = self.options
        start = self.position
        self.position += self.frame_len
        self._voiced.append(voiced)
        self._rms.append(rms)
        if not self.in_speech:
            onset = (
                voiced
                and rms >= opts.min_onset_rms
                and spectral_flatness(frame) <= opts.max_onset_flatness
            )
            self._onset.append(onset)
            if sum(self._onset) >= opts.start_voiced_frames:
                first = start - (len(self._onset) - 1) * self.frame_len
                self._utterance_start = max(
                    first - self._seconds(opts.pre_roll_s), self._previous_end, 0
                )
                self.onset = first  # where voice began (the utterance starts earlier)
                self.in_speech = True
                self._paused = False
                self._silence = 0
                self._last_voiced_end = self.position
                self._onset.clear()
                return [SpeechStart(self._utterance_start)]
            return []
        out: list[Boundary] = []
        if voiced:
            self._silence = 0
            self._last_voiced_end = self.position
            if self._paused:
                self._paused = False
                out.append(SpeechResume())
            return out
        self._silence += self.frame_len
        long = self.position - self._utterance_start > self._seconds(opts.long_utterance_s)
        hangover = self._seconds(opts.long_hangover_s if long else opts.end_hangover_s)
        if not self._paused and self._silence >= self._seconds(opts.speculate_after_s):
            self._paused = True
            out.append(SpeechPause(self._last_voiced_end))
        if self._silence >= hangover:
            out.append(self._end(self._last_voiced_end))
        elif self.position - self._utterance_start >= self._seconds(opts.max_utterance_s):
            out.append(self._cut())
        return out

    def _end(self, speech_end: int) -> SpeechEnd:
        self.in_speech = False
        self._paused = False
        self._onset.clear()
        self._previous_end = speech_end
        return SpeechEnd(speech_end)

    def _cut(self) -> SpeechEnd:
        """Too long without a pause: cut at the quietest 100 ms of the recent past."""
        frames_back = int(self.options.cut_search_s * 1000 / self.options.frame_ms)
        keep_clear = int(300 / self.options.frame_ms)  # don't cut in the syllable being spoken
        rms = np.array(self._rms, dtype=np.float64)[-frames_back:-keep_clear]
        window = max(1, 100 // self.options.frame_ms)
        smoothed = np.convolve(rms, np.ones(window) / window, mode="same")
        quietest = int(np.argmin(smoothed))
        first_frame_pos = self.position - frames_back * self.frame_len
        cut = first_frame_pos + quietest * self.frame_len + self.frame_len // 2
        cut -= cut % self.frame_len
        self._utterance_start = cut
        self._previous_end = cut
        self._paused = False
        return SpeechEnd(cut, continues=True)

    def cut_at(self, sample: int) -> SpeechEnd | None:
        """End the open utterance at `sample` and go on with a new one from there (another
        voice began there); None when no utterance is open or `sample` is outside it."""
        if not self.in_speech or not self._utterance_start < sample < self.position:
            return None
        self._utterance_start = sample
        self._previous_end = sample
        return SpeechEnd(sample, continues=True)

    @property
    def pause_start(self) -> int | None:
        """Where voice stopped, while an utterance is in a pause (after speculate_after_s)."""
        return self._last_voiced_end if self.in_speech and self._paused else None

    def end_at_pause(self) -> SpeechEnd | None:
        """End the utterance where its pause began, as the hangover would have."""
        if self.pause_start is None:
            return None
        return self._end(self._last_voiced_end)

    def force_end(self) -> SpeechEnd | None:
        """End the open utterance now (flush, end of stream), keeping all audio heard.

        Open or not, the audio so far is done with: the next utterance's onset and
        pre-roll do not reach back past here (a client's commit of a turn, OpenAI's
        manual mode, must not lend its last moments to the next turn).
        """
        if not self.in_speech:
            self._onset.clear()
            self._previous_end = max(self._previous_end, self.position)
            return None
        return self._end(max(self.position, self._last_voiced_end))

    def voiced_mask(self, start: int, end: int) -> np.ndarray:
        """Per-frame voicing for samples [start, end) as far as history reaches."""
        first_known = self.position - len(self._voiced) * self.frame_len
        flags = np.array(self._voiced, dtype=bool)
        lo = max(0, (start - first_known) // self.frame_len)
        hi = max(lo, (end - first_known + self.frame_len - 1) // self.frame_len)
        mask = flags[lo:hi]
        missing = max(0, (first_known - start) // self.frame_len)
        # Frames older than history are assumed voiced: never drop words for lack of memory.
        return np.concatenate([np.ones(missing, dtype=bool), mask])
