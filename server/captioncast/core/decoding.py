"""What the core asks of a speech recognizer, and what it gets back: the Decoder interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

DecodeKind = Literal["partial", "final"]


@dataclass(frozen=True)
class DecodeThresholds:
    """Whisper's tests of a hypothesis, defined once: the engine retries a decode that fails
    them at a higher temperature, the policy drops a final that still fails them."""

    no_speech_threshold: float = 0.6  # above it (with a low log-prob): silence
    log_prob_threshold: float = -1.0  # below it: gibberish
    compression_ratio_threshold: float = 2.4  # above it: a loop


@dataclass(frozen=True)
class DecodeRequest:
    """Decode `audio` (16 kHz mono float32); the text must continue `prefix`."""

    request_id: int
    kind: DecodeKind
    utterance: int
    audio: np.ndarray = field(repr=False)
    prefix: str = ""
    prompt: str = ""  # earlier finals and the client's domain words, to condition on
    language: str | None = None  # None: detect
    task: Literal["transcribe", "translate"] = "transcribe"
    word_timestamps: bool = False
    # A final asked for when a pause began, before it is known to end the utterance: the
    # scheduler puts it behind finals already known, and it is cancelled if speech resumes.
    speculative: bool = False
    # "busy": the scheduler is behind on finals and asks for a cheaper decode of this one.
    effort: Literal["full", "busy"] = "full"

    @property
    def duration(self) -> float:
        return len(self.audio) / 16000


@dataclass(frozen=True)
class DecodedWord:
    word: str  # with its leading space, as Whisper writes it
    start: float  # seconds from the start of the request's audio
    end: float
    probability: float


@dataclass(frozen=True)
class DecodeResult:
    """`text` is the whole hypothesis, prefix included; `words` cover all of it when asked."""

    text: str
    language: str
    words: tuple[DecodedWord, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    language_probability: float = 1.0
    temperature: float = 0.0  # above 0: greedy-beam output failed the checks, this one sampled


class Decoder(Protocol):
    """A blocking recognizer; the engine runs it off the event loop."""

    @property
    def name(self) -> str: ...

    @property
    def multilingual(self) -> bool: ...

    def decode(self, request: DecodeRequest) -> DecodeResult: ...


@runtime_checkable
class BatchDecoder(Decoder, Protocol):
    """A recognizer that decodes several requests of one kind, task and language in one
    call, as a GPU does well; results in the order of the requests."""

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]: ...
