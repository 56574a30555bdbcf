"""One stream's voices over time: what to embed, and where another voice took over.

Pure: audio and the open utterance in, `EmbedAsk`s out; embeddings in, a cut point out.
While an utterance is open its voice is embedded in windows as it grows, and the mean of
those windows labels its final. Another voice beginning inside what the VAD took as one
utterance is found one of two ways:
- `segmentation` (when the model is installed): every second of voice, and once more
  as a pause begins, the open utterance's last 4 s are put to the speaker segmentation
  model, which says frame by frame which local voice speaks; where one voice gives way
  to another, with enough of each, the utterance is cut, at the quietest moment between
  them;
- `embedding`: a window unlike the utterance so far is another voice, and the
  utterance is cut at the quietest moment of that window (a turn change is nearly
  always a dip, if not a pause). It needs 1.5 s of the new voice, so it misses short
  replies; it is the fallback.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.buffer import AudioBuffer
from captioncast.speakers.segments import ChangeOptions, change_in

FRAME = 320  # 20 ms: the segmenter's voicing frame
PAUSE_FRAMES = 8  # 160 ms without voice: a pause has begun (the core speculates at 200 ms)
VoicedMask = Callable[[int, int], np.ndarray]  # samples [start, end) -> voiced per frame


@dataclass(frozen=True)
class TrackOptions:
    window_s: float = 1.5  # voice per window: shorter embeddings mistake one voice for two
    hop_s: float = 0.5  # a change is seen about window_s + hop_s after it
    change_below: float = 0.80  # a window this unlike the utterance so far: another voice
    min_turn_s: float = 1.0  # voice on each side of a cut
    keep_s: float = 40.0  # audio held for the embeddings still to come
    max_utterance_s: float = 15.0  # an utterance's own embedding uses its last this much
    # Segmentation: asked every `segment_hop_s` of voice from `segment_first_s` on, on the
    # open utterance's last `segment_window_s` and up to `segment_context_s` before it.
    # The cut is placed from the frames whenever the change is seen, so a longer hop costs
    # no precision; 10 s windows every 0.5 s cost +41 % CPU per stream against +16 %
    # without segmentation (bench/RESULTS.md, "Who said it").
    segment_first_s: float = 0.8
    segment_hop_s: float = 1.0
    segment_window_s: float = 4.0
    segment_context_s: float = 1.0
    change: ChangeOptions = field(default_factory=ChangeOptions)


@dataclass(frozen=True)
class EmbedAsk:
    ask_id: int
    utterance: int
    kind: Literal["window", "utterance", "segment"]
    start: int  # samples: the span whose voiced audio `audio` is
    end: int
    audio: np.ndarray = field(repr=False)

    @property
    def voiced_s(self) -> float:
        return len(self.audio) / MODEL_SAMPLE_RATE


@dataclass(frozen=True)
class Heard:
    """An ended utterance's voice, known at once from its windows: the mean of windowed
    embeddings is how GE2E and d-vector encoders embed a long utterance anyway."""

    utterance: int
    embedding: np.ndarray = field(repr=False)
    voiced_s: float


@dataclass
class _Open:
    index: int
    start: int
    windows: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # a, b, emb
    next_window_at: int = 0  # voiced samples in the utterance when the next window is due
    next_segment_at: int = 0
    segmented: int = 0  # voiced samples in the utterance at its last segmentation


class SpeakerTrack:
    def __init__(self, options: TrackOptions | None = None, segmenting: bool = False) -> None:
        self.options = options or TrackOptions()
        self.segmenting = segmenting  # changes found by segmentation, not by the windows
        self._audio = AudioBuffer()
        self._rms: list[float] = []  # per 20 ms frame, from `_rms_base` on
        self._rms_base = 0
        self._open: _Open | None = None
        self._ids = itertools.count(1)

    @property
    def position(self) -> int:
        return self._audio.end

    def push(self, audio: np.ndarray) -> None:
        """16 kHz audio as the core gets it."""
        self._audio.append(audio)
        # Whole frames only: a tail shorter than a frame waits for the next push.
        done = (self._rms_base + len(self._rms)) * FRAME
        usable = (self._audio.end - done) // FRAME * FRAME
        if usable > 0:
            frames = self._audio.slice(done, done + usable).reshape(-1, FRAME)
            self._rms.extend(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)).tolist())
        keep = int(self.options.keep_s * MODEL_SAMPLE_RATE)
        forget = max(0, self._audio.end - keep)
        if forget > self._audio.start:
            self._audio.forget_before(forget)
            drop = forget // FRAME - self._rms_base
            if drop > 0:
                del self._rms[:drop]
                self._rms_base += drop

    def step(self, open_: tuple[int, int] | None,
             voiced: VoicedMask) -> list[EmbedAsk | Heard]:
        """What to embed now, given the open utterance (index, start sample) if any, and
        the voice of an utterance that ended, when its windows already tell it."""
        asks: list[EmbedAsk | Heard] = []
        current = self._open
        if current is not None and (open_ is None or open_[0] != current.index):
            end = open_[1] if open_ is not None else self.position
            inside = [e for _, b, e in current.windows if b <= end + FRAME]
            if inside:
                voiced_s = float(voiced(current.start, end).sum()) * FRAME / MODEL_SAMPLE_RATE
                asks.append(Heard(current.index, _unit(np.mean(inside, axis=0)), voiced_s))
            else:
                ask = self._ask(current.index, "utterance", current.start, end, voiced,
                                self.options.max_utterance_s)
                if ask is not None:
                    asks.append(ask)
            self._open = current = None
        if open_ is not None and current is None:
            self._open = current = _Open(open_[0], open_[1],
                                         next_window_at=self._samples(self.options.window_s),
                                         next_segment_at=self._samples(
                                             self.options.segment_first_s))
        if current is not None:
            mask = voiced(current.start, self.position)
            heard = int(mask.sum()) * FRAME
            if heard >= current.next_window_at:
                current.next_window_at += self._samples(self.options.hop_s)
                ask = self._ask(current.index, "window", current.start, self.position,
                                voiced, self.options.window_s)
                if ask is not None:
                    asks.append(ask)
            # Segmented every hop of voice, and once more as a pause begins: a reply in
            # an utterance's last half second is cut while the VAD's hangover runs.
            pausing = len(mask) >= PAUSE_FRAMES and not mask[-PAUSE_FRAMES:].any()
            unseen = heard - current.segmented
            if self.segmenting and (heard >= current.next_segment_at or (
                    pausing and unseen >= self._samples(self.options.change.change_after_s))):
                current.next_segment_at = heard + self._samples(self.options.segment_hop_s)
                current.segmented = heard
                asks.append(self._segment_ask(current))
        return asks

    def _segment_ask(self, current: _Open) -> EmbedAsk:
        end = self.position
        start = max(self._audio.start, end - self._samples(self.options.segment_window_s),
                    current.start - self._samples(self.options.segment_context_s))
        return EmbedAsk(next(self._ids), current.index, "segment", start, end,
                        self._audio.slice(start, end))

    def segment_done(self, ask: EmbedAsk, speakers: np.ndarray,
                     centres: np.ndarray) -> int | None:
        """The segmentation of `ask`'s audio (a local voice per frame, each frame's centre
        in samples from the audio's start): the sample where another voice took over the
        open utterance, if one did."""
        current = self._open
        if current is None or current.index != ask.utterance:
            return None
        span = change_in(speakers, ask.start + centres, current.start, self.options.change)
        if span is None:
            return None
        return self._quietest(*span) if span[1] - span[0] > FRAME else (span[0] + span[1]) // 2

    def window_done(self, ask: EmbedAsk, embedding: np.ndarray) -> int | None:
        """A window's embedding: the sample where another voice took over, if one did
        (when segmentation finds the changes, the windows only label)."""
        current = self._open
        if current is None or current.index != ask.utterance:
            return None  # the utterance ended or was cut meanwhile
        vector = _unit(embedding)
        before = [e for a, b, e in current.windows if b <= ask.start + FRAME]
        current.windows.append((ask.start, ask.end, vector))
        if not before or self.segmenting:
            return None
        reference = _unit(np.mean(before, axis=0))
        if float(reference @ vector) >= self.options.change_below:
            return None
        cut = self._quietest(ask.start, ask.end - self._samples(0.3))
        if cut - current.start < self._samples(self.options.min_turn_s):
            return None
        return cut

    # -- helpers --------------------------------------------------------------------------

    def _samples(self, seconds: float) -> int:
        return int(seconds * MODEL_SAMPLE_RATE)

    def _ask(self, utterance: int, kind: Literal["window", "utterance"], start: int,
             end: int, voiced: VoicedMask, last_s: float) -> EmbedAsk | None:
        """The last `last_s` of voice in [start, end); None when there is too little."""
        start = max(start, self._audio.start)
        if end - start < FRAME:
            return None
        mask = voiced(start, end)
        frames = np.flatnonzero(mask)
        if len(frames) * FRAME < self._samples(0.3):
            return None  # no voice to speak of: nothing to embed
        frames = frames[-max(1, self._samples(last_s) // FRAME):]
        audio = self._audio.slice(start, end)
        starts = frames * FRAME
        keep = starts[starts + FRAME <= len(audio)]
        voice = audio[(keep[:, None] + np.arange(FRAME)).reshape(-1)] if len(keep) else audio
        return EmbedAsk(next(self._ids), utterance, kind, start + int(frames[0]) * FRAME,
                        end, voice)

    def _quietest(self, start: int, end: int) -> int:
        """The middle of the quietest 100 ms in [start, end): where to cut between voices."""
        lo = max(0, start // FRAME - self._rms_base)
        hi = min(len(self._rms), max(lo + 1, end // FRAME - self._rms_base))
        rms = np.asarray(self._rms[lo:hi], dtype=np.float64)
        if len(rms) == 0:
            return start
        smoothed = np.convolve(rms, np.ones(5) / 5, mode="same") if len(rms) >= 5 else rms
        return (self._rms_base + lo + int(np.argmin(smoothed))) * FRAME


def _unit(embedding: np.ndarray) -> np.ndarray:
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
