"""The caption session: audio in, decode requests and caption events out, no I/O.

The transport feeds audio and control messages; the session answers with
`Action`s: events to send, decode requests to schedule, requests to cancel.
When a decode finishes, the transport hands the result back through
`on_result`. Partials re-decode the open utterance as audio arrives (greedy);
words that consecutive hypotheses agree on, well back from the end of the audio,
become `stable` and are the forced prefix of the utterance's later partials, so
a display can hold them still. The final is decided by a beam search over the
whole utterance with no prefix (protocol 2): it never inherits a partial's
guess, and the words of `stable` it changes are counted.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.buffer import AudioBuffer
from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.repetition import LoopOptions, RepetitionGuard, collapse_loops
from captioncast.core.segmenter import (
    Segmenter,
    SegmenterOptions,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from captioncast.core.text import (
    agreed_prefix,
    clean,
    compression_ratio,
    prompt_tail,
    revised_words,
)
from captioncast.errors import CaptioncastError
from captioncast.protocol.events import End, Error, Event, Final, Partial, Ready, Sequencer, Word


@dataclass(frozen=True)
class PolicyOptions:
    partial_interval_s: float = 0.5  # re-decode the open utterance at most this often
    min_partial_audio_s: float = 0.4  # shorter audio gives Whisper too little to go on
    final_tail_s: float = 0.2  # silence after the last voiced frame helps Whisper end cleanly
    prompt_chars: int = 200  # earlier finals to condition on; more slows decoding
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # On a breath or a click (a fraction of a second of "speech"), tiny.en often says
    # "Thank you." with a high no-speech probability but a confident-looking log-prob, so
    # for utterances this short the no-speech probability alone decides.
    short_speech_s: float = 1.0
    word_vad_margin_s: float = 0.2  # word timings are approximate; allow this much slack
    # `stable`: a word must be agreed by this many consecutive partial hypotheses, and
    # this many words at the end of a hypothesis are never stable (the audio may end
    # inside them, and Whisper guesses most at the edge).
    stable_agreement: int = 3
    stable_holdback_words: int = 2
    # Context: a final is decoded with up to this much of the earlier finals' audio in
    # front of it, their text as the forced prefix, and only the new words kept. Whisper
    # hears a short utterance alone far worse than inside its sentence, and the encoder
    # pads every window to `context_window_s` anyway, so the context costs little.
    context_s: float = 10.0
    context_window_s: float = 15.0  # utterance and context together fit the encoder window
    # Force the context's text as the decoder's prefix (else it is only in the prompt and
    # the context's words are cut off by their timings).
    context_prefix: bool = True
    # Protocol 1 behaviour, for comparison in bench/policy_sim.py only: force `stable`
    # as the prefix of the final's decode too.
    final_keeps_stable: bool = False
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    loops: LoopOptions = field(default_factory=LoopOptions)


@dataclass(frozen=True)
class SessionConfig:
    """What the server decided for one stream."""

    session_id: str
    model: str
    language: str | None  # None: detect per utterance
    task: Literal["transcribe", "translate"] = "transcribe"
    interim: bool = True
    words: bool = True
    prompt: str = ""
    resume_until: int = 0  # seconds a dropped connection can resume within; 0: it cannot


@dataclass(frozen=True)
class Cancel:
    """A decode request whose result is no longer wanted."""

    request_id: int


Action = Event | DecodeRequest | Cancel


@dataclass
class _Speculation:
    request_id: int
    speech_end: int
    stable: str
    finals_before: int  # finals sent when it was asked for: its prompt and context are stale
    context: _Context  # once another final has gone out
    result: DecodeResult | None = None
    done: bool = False


@dataclass(frozen=True)
class _Context:
    """Earlier finals' audio in front of an utterance's, and their text as its prefix."""

    samples: int = 0  # how much of the request's audio comes before the utterance
    text: str = ""
    finals: int = 0  # how many of the latest finals it holds


@dataclass
class _OpenUtterance:
    index: int
    start: int
    stable: str = ""
    partial_request: int | None = None
    partial_audio_end: int = 0
    speculation: _Speculation | None = None
    # Earlier hypotheses' words after `stable`, newest last, for agreement.
    hypotheses: deque[list[str]] = field(default_factory=lambda: deque(maxlen=8))
    shown_stable: str = ""  # `stable` of the last partial sent: what a display holds still


@dataclass
class _PendingFinal:
    index: int
    start: int
    speech_end: int
    audio_start: int
    audio_end: int
    stable: str
    shown_stable: str
    voiced: np.ndarray
    request_id: int  # 0: not asked for yet, it waits for the finals before it (their text
    # is its prompt); `audio` holds its audio until then
    result: DecodeResult | None = None
    failed: str | None = None
    audio: np.ndarray | None = None  # from `audio_from` (context room) to the end, padded
    audio_from: int = 0
    context: _Context = field(default_factory=_Context)


class CaptionSession:
    """One audio stream's captioning state machine."""

    def __init__(self, config: SessionConfig, options: PolicyOptions | None = None) -> None:
        self.config = config
        self.options = options or PolicyOptions()
        self.segmenter = Segmenter(self.options.segmenter)
        self._buffer = AudioBuffer()
        self._seq = Sequencer()
        self._next_request = 0
        self._next_utterance = 0
        self._open: _OpenUtterance | None = None
        self._finals: OrderedDict[int, _PendingFinal] = OrderedDict()
        # Recent finals for the prompt: only as many as prompt_chars can use, so that a
        # session of hours does not grow.
        self._history: deque[str] = deque()
        # The same finals with where their audio lies: (start, end, text), for context.
        self._recent: deque[tuple[int, int, str]] = deque(maxlen=32)
        self._guard = RepetitionGuard(self.options.loops)
        self._ending = False
        self.finished = False
        self.finals_sent = 0
        self.partials_sent = 0
        # Words shown as `stable` in a partial, and those of them the final changed.
        self.stable_words_shown = 0
        self.stable_words_revised = 0

    # -- inputs -----------------------------------------------------------------

    def start(self) -> list[Action]:
        return [self.ready(self._seq.next())]

    def ready(self, seq: int = 1, audio_received: float | None = None) -> Ready:
        """The `ready` event; a resumed connection gets it again, with `audio_received`."""
        return Ready(
            seq,
            session=self.config.session_id,
            model=self.config.model,
            sample_rate=MODEL_SAMPLE_RATE,
            language=self.config.language or "auto",
            resume_until=self.config.resume_until,
            audio_received=audio_received,
        )

    @property
    def ending(self) -> bool:
        """eos was received: no more audio is taken."""
        return self._ending

    @property
    def loops_caught(self) -> int:
        return self._guard.loops

    @property
    def position(self) -> int:
        """Samples received so far: the audio clock."""
        return self._buffer.end

    @property
    def duration(self) -> float:
        return self._buffer.end / MODEL_SAMPLE_RATE

    def feed(self, audio: np.ndarray) -> list[Action]:
        """16 kHz mono float32 audio, in order."""
        if self._ending:
            return []
        self._buffer.append(audio)
        actions: list[Action] = []
        for boundary in self.segmenter.push(audio):
            if isinstance(boundary, SpeechStart):
                self._open = _OpenUtterance(
                    self._take_utterance(), boundary.sample, partial_audio_end=boundary.sample
                )
            elif isinstance(boundary, SpeechPause):
                actions.extend(self._speculate(boundary.speech_end))
            elif isinstance(boundary, SpeechResume):
                actions.extend(self._drop_speculation())
            elif isinstance(boundary, SpeechEnd):
                actions.extend(self._end_utterance(boundary.speech_end, boundary.continues))
        actions.extend(self._maybe_partial())
        self._forget_old_audio()
        return actions

    def flush(self) -> list[Action]:
        """End the open utterance now; its final follows."""
        end = self.segmenter.force_end()
        if end is None:
            return []
        return self._end_utterance(end.speech_end, continues=False)

    def eos(self) -> list[Action]:
        """End of stream: finalize everything, then `end`."""
        actions = self.flush()
        self._ending = True
        actions.extend(self._emit_ready_finals())
        return actions

    def error(self, error: CaptioncastError) -> list[Action]:
        """Report an error in the session's own event sequence."""
        return [Error(self._seq.next(), code=error.code, message=error.message)]

    def on_result(self, request_id: int, result: DecodeResult) -> list[Action]:
        """A decode finished; returns the events it yields."""
        open_ = self._open
        if open_ is not None and open_.partial_request == request_id:
            open_.partial_request = None
            actions = self._apply_partial(open_, result)
            return actions + self._maybe_partial()
        if open_ is not None and open_.speculation and open_.speculation.request_id == request_id:
            open_.speculation.result = result
            open_.speculation.done = True
            return []
        for pending in self._finals.values():
            if pending.request_id == request_id:
                pending.result = without_context(result, pending.context,
                                                 self.options.context_prefix)
                return self._emit_ready_finals()
        return []

    def on_failure(self, request_id: int, message: str) -> list[Action]:
        """A decode failed: a partial is skipped; a final still goes out with its stable text."""
        open_ = self._open
        if open_ is not None and open_.partial_request == request_id:
            open_.partial_request = None
            return []
        if open_ is not None and open_.speculation and open_.speculation.request_id == request_id:
            open_.speculation = None
            return []
        for pending in self._finals.values():
            if pending.request_id == request_id:
                pending.failed = message
                return self._emit_ready_finals()
        return []

    # -- utterances ---------------------------------------------------------------

    def _take_utterance(self) -> int:
        index = self._next_utterance
        self._next_utterance += 1
        return index

    def _prompt(self, context: _Context | None = None) -> str:
        history = list(self._history)
        if context is not None and context.text:
            # the context's finals are the prefix already: the prompt is what came before
            history = history[: max(0, len(history) - context.finals)]
        tail = prompt_tail(history, self.options.prompt_chars)
        return f"{self.config.prompt} {tail}".strip()

    def _request(self, kind: Literal["partial", "final"], utterance: int, audio: np.ndarray,
                 prefix: str, context: _Context | None = None) -> DecodeRequest:
        self._next_request += 1
        with_context = context is not None and context.samples > 0
        if with_context and self.options.context_prefix:
            assert context is not None
            prefix = f"{context.text} {prefix}".strip()
        return DecodeRequest(
            request_id=self._next_request,
            kind=kind,
            utterance=utterance,
            audio=audio,
            prefix=prefix,
            prompt=self._prompt(context if self.options.context_prefix else None),
            language=self.config.language,
            task=self.config.task,
            # the context's words are told from the utterance's by their timings
            word_timestamps=kind == "final" and (self.config.words or with_context),
        )

    def _maybe_partial(self) -> list[Action]:
        open_ = self._open
        if (
            open_ is None
            or not self.config.interim
            or open_.partial_request is not None
            or open_.speculation is not None
            or self._ending
        ):
            return []
        opts = self.options
        now = self.position
        if now - open_.partial_audio_end < opts.partial_interval_s * MODEL_SAMPLE_RATE:
            return []
        if now - open_.start < opts.min_partial_audio_s * MODEL_SAMPLE_RATE:
            return []
        # Silence after speech needs no new partial: the final is on its way.
        if not self.segmenter.voiced_mask(open_.partial_audio_end, now).any():
            return []
        request = self._request("partial", open_.index, self._buffer.slice(open_.start, now),
                                open_.stable)
        open_.partial_request = request.request_id
        open_.partial_audio_end = now
        return [request]

    def _apply_partial(self, open_: _OpenUtterance, result: DecodeResult) -> list[Action]:
        voiced = self.segmenter.voiced_mask(open_.start, open_.partial_audio_end)
        if self._is_hallucination(result, self._voiced_s(voiced)):
            return []
        text = clean(result.text)
        if not text.startswith(open_.stable):
            return []  # the decoder did not honour the prefix; never contradict `stable`
        words = text.split()
        if len(collapse_loops(words, self.options.loops)) < len(words) \
                or self._guard.copies_previous(words):
            return []  # a looping or copied hypothesis: its words must never become `stable`
        new_words = text[len(open_.stable):].split()
        agreed = self._agreed(open_, new_words)
        if agreed:
            open_.stable = " ".join([*open_.stable.split(), *new_words[:agreed]])
            new_words = new_words[agreed:]
            for older in open_.hypotheses:
                del older[:agreed]
        open_.hypotheses.append(list(new_words))
        full = " ".join([*open_.stable.split(), *new_words])
        if self._finals or not full:
            return []  # an earlier utterance's final goes out first; a later partial replaces this
        self.partials_sent += 1
        open_.shown_stable = open_.stable
        return [
            Partial(
                self._seq.next(),
                utterance=open_.index,
                start=open_.start / MODEL_SAMPLE_RATE,
                end=open_.partial_audio_end / MODEL_SAMPLE_RATE,
                text=full,
                stable=open_.stable,
            )
        ]

    def _agreed(self, open_: _OpenUtterance, words: list[str]) -> int:
        """How many of a hypothesis's leading words (after `stable`) become stable now."""
        opts = self.options
        earlier = opts.stable_agreement - 1
        if len(open_.hypotheses) < earlier:
            return 0
        agreed = len(words) - opts.stable_holdback_words
        for older in list(open_.hypotheses)[len(open_.hypotheses) - earlier:]:
            agreed = min(agreed, agreed_prefix(older, words))
        return max(0, agreed)

    def _speculate(self, speech_end: int) -> list[Action]:
        """A pause began: decode the final now, so it is ready if the pause becomes the end."""
        open_ = self._open
        if open_ is None or open_.speculation is not None or self._finals:
            return []  # with finals outstanding, its prompt would lack their text
        audio_end = min(speech_end + self._tail(), self.position)
        audio_from = self._context_room(open_.start)
        audio = self._buffer.slice(audio_from, audio_end)
        context = self._choose_context(
            open_.start, audio_from, audio_end,
            self._voiced_s(self.segmenter.voiced_mask(open_.start, audio_end)))
        request = self._request("final", open_.index,
                                self._context_audio(audio, audio_from, open_.start, context),
                                self._final_prefix(open_), context)
        open_.speculation = _Speculation(request.request_id, speech_end, open_.stable,
                                         self.finals_sent, context)
        return [request]

    def _context_room(self, start: int) -> int:
        """Where the audio a final may need begins: context room before its start."""
        room = int(self.options.context_s * MODEL_SAMPLE_RATE)
        return max(self._buffer.start, start - room)

    def _choose_context(self, start: int, audio_from: int, audio_end: int,
                        voiced_s: float) -> _Context:
        """The earliest run of recent finals, up to now, that fits in front of the utterance."""
        opts = self.options
        # Whisper's no-speech probability would hear the context's speech: a breath or a
        # click after speech is judged alone, as Whisper's own rule needs.
        # With the language detected per utterance, the context's audio would decide it.
        if (opts.context_s <= 0 or not self._recent or voiced_s < opts.short_speech_s
                or self.config.language is None):
            return _Context()
        window = int(opts.context_window_s * MODEL_SAMPLE_RATE) - self._tail()
        earliest: int | None = None
        texts: list[str] = []
        for f_start, _, text in reversed(self._recent):
            if f_start < audio_from or audio_end - f_start > window or f_start >= start:
                break
            earliest = f_start
            texts.insert(0, text)
        if earliest is None:
            return _Context()
        return _Context(samples=start - earliest, text=" ".join(texts), finals=len(texts))

    @staticmethod
    def _context_audio(audio: np.ndarray, audio_from: int, start: int,
                       context: _Context) -> np.ndarray:
        """The request's audio: from the context's start, or the utterance's."""
        return audio[max(0, start - context.samples - audio_from):]

    def _final_prefix(self, open_: _OpenUtterance) -> str:
        return open_.stable if self.options.final_keeps_stable else ""

    def _drop_speculation(self) -> list[Action]:
        open_ = self._open
        if open_ is None or open_.speculation is None:
            return []
        speculation, open_.speculation = open_.speculation, None
        return [] if speculation.done else [Cancel(speculation.request_id)]

    def _tail(self) -> int:
        return int(self.options.final_tail_s * MODEL_SAMPLE_RATE)

    def _end_utterance(self, speech_end: int, continues: bool) -> list[Action]:
        open_ = self._open
        if open_ is None:
            return []
        actions: list[Action] = []
        if open_.partial_request is not None:
            actions.append(Cancel(open_.partial_request))
        audio_end = speech_end if continues else min(speech_end + self._tail(), self.position)
        speculation = open_.speculation
        voiced = self.segmenter.voiced_mask(open_.start, audio_end)
        prefix = self._final_prefix(open_)
        if (
            speculation is not None
            and speculation.speech_end == speech_end
            and (not prefix or speculation.stable == open_.stable)
            and speculation.finals_before == self.finals_sent
            and not self._finals
            and not continues
        ):
            result = speculation.result
            pending = _PendingFinal(
                open_.index, open_.start, speech_end, open_.start, audio_end, prefix,
                open_.shown_stable, voiced, speculation.request_id,
                None if result is None
                else without_context(result, speculation.context, self.options.context_prefix),
                context=speculation.context,
            )
        else:
            if speculation is not None and not speculation.done:
                actions.append(Cancel(speculation.request_id))
            audio_from = self._context_room(open_.start)
            audio = self._buffer.slice(audio_from, audio_end)
            # Audio that stops mid-word (eos, flush) gets the silence Whisper ends well on.
            pad = 0 if continues else speech_end + self._tail() - audio_end
            if pad > 0:
                audio = np.concatenate([audio, np.zeros(pad, np.float32)])
            pending = _PendingFinal(
                open_.index, open_.start, speech_end, open_.start, audio_end, prefix,
                open_.shown_stable, voiced, 0, audio=audio, audio_from=audio_from,
            )
            # Finals are decoded in order, each prompted with the text of those before it,
            # so a file sent faster than real time is captioned as well as a live one.
            if not self._finals:
                actions.append(self._ask(pending))
        self._finals[open_.index] = pending
        self._open = (
            _OpenUtterance(self._take_utterance(), speech_end, partial_audio_end=speech_end)
            if continues
            else None
        )
        actions.extend(self._emit_ready_finals())
        return actions

    def _forget_old_audio(self) -> None:
        """Keep only what an open or pending utterance, or the next pre-roll, can still need."""
        seg = self.options.segmenter
        keep_back = int((seg.pre_roll_s + seg.start_window_frames * seg.frame_ms / 1000 + 0.2)
                        * MODEL_SAMPLE_RATE)
        room = int(self.options.context_s * MODEL_SAMPLE_RATE)
        keep = self.position - keep_back - room
        if self._open is not None:
            keep = min(keep, self._open.start - room)
        self._buffer.forget_before(max(0, keep))

    # -- finals -------------------------------------------------------------------

    def _ask(self, pending: _PendingFinal) -> DecodeRequest:
        """Ask for a final once the finals before it are out: their text is its context."""
        assert pending.audio is not None
        context = self._choose_context(pending.start, pending.audio_from, pending.audio_end,
                                       self._voiced_s(pending.voiced))
        audio = self._context_audio(pending.audio, pending.audio_from, pending.start, context)
        request = self._request("final", pending.index, audio, pending.stable, context)
        pending.request_id, pending.audio, pending.context = request.request_id, None, context
        return request

    def _emit_ready_finals(self) -> list[Action]:
        actions: list[Action] = []
        while self._finals:
            pending = next(iter(self._finals.values()))
            if pending.request_id == 0:
                actions.append(self._ask(pending))
                break
            if pending.result is None and pending.failed is None:
                break
            del self._finals[pending.index]
            if pending.failed is not None:
                actions.append(
                    Error(self._seq.next(), code="internal",
                          message=f"decoding utterance {pending.index} failed: {pending.failed}")
                )
            actions.append(self._final_event(pending))
        if self._ending and not self._finals and self._open is None and not self.finished:
            self.finished = True
            actions.append(
                End(self._seq.next(), duration=self.duration, utterances=self._next_utterance)
            )
        return actions

    def _voiced_s(self, voiced: np.ndarray) -> float:
        return float(voiced.sum()) * self.segmenter.frame_len / MODEL_SAMPLE_RATE

    def _is_hallucination(self, result: DecodeResult, voiced_s: float) -> bool:
        opts = self.options
        silent = result.no_speech_prob > opts.no_speech_threshold and (
            result.avg_logprob < opts.log_prob_threshold or voiced_s < opts.short_speech_s
        )
        return silent or result.compression_ratio > opts.compression_ratio_threshold

    def _final_event(self, pending: _PendingFinal) -> Final:
        # A failed decode leaves what the partials agreed on: the best there is.
        text, language = pending.stable or pending.shown_stable, self.config.language or "en"
        words: tuple[DecodedWord, ...] = ()
        result = pending.result
        if result is not None:
            language = result.language
            if not self._is_hallucination(result, self._voiced_s(pending.voiced)):
                text, words = self._heard_words(pending, result)
            elif pending.stable:
                words = self._words_of_prefix(pending, result)
            else:
                text = ""  # the whole utterance's decode heard no speech: it decides
        text, words = self._guard_loops(pending, text, words)
        self._count_revisions(pending.shown_stable, text)
        self.finals_sent += 1
        offset = pending.audio_start / MODEL_SAMPLE_RATE
        wire_words = tuple(
            Word(w.word.strip(), offset + w.start, offset + w.end, w.probability) for w in words
        )
        # The first word, not the pre-roll, is where the caption starts.
        start = pending.start / MODEL_SAMPLE_RATE
        if wire_words:
            start = max(start, min(wire_words[0].start, pending.speech_end / MODEL_SAMPLE_RATE))
        return Final(
            self._seq.next(),
            utterance=pending.index,
            start=start,
            end=pending.speech_end / MODEL_SAMPLE_RATE,
            text=text,
            language=language,
            words=wire_words,
            include_words=self.config.words,
        )

    def _count_revisions(self, shown_stable: str, final_text: str) -> None:
        """Words a display held still that the final changed (case and punctuation aside)."""
        shown = shown_stable.split()
        self.stable_words_shown += len(shown)
        self.stable_words_revised += revised_words(shown, final_text.split())

    def _guard_loops(self, pending: _PendingFinal, text: str, words: tuple[DecodedWord, ...]
                     ) -> tuple[str, tuple[DecodedWord, ...]]:
        """Cut repeats out of a final; after a loop, start the prompt afresh."""
        surface = text.split()
        # Words the partials agreed on and the final heard too were heard by independent
        # decodes: a loop or a copy of the last final they are not.
        protected = max(len(pending.stable.split()),
                        agreed_prefix(pending.shown_stable.split(), surface))
        verdict = self._guard.check(surface, protected=protected,
                                    duration=(pending.speech_end - pending.start)
                                    / MODEL_SAMPLE_RATE)
        if verdict.reset_prompt:
            # A loop in the prompt makes the next decode loop too: forget what led to it.
            self._history.clear()
            self._recent.clear()
        if not verdict.looped:
            if not verdict.reset_prompt:
                self._remember(text, pending.start, pending.audio_end)
            return text, words
        text = " ".join(surface[i] for i in verdict.keep)
        if len(words) == len(surface):
            words = tuple(words[i] for i in verdict.keep)
        elif words:
            words = ()  # timings that do not map onto words cannot be cut along with them
        return text, words

    def _remember(self, text: str, start: int, end: int) -> None:
        if not text:
            return
        self._history.append(text)
        self._recent.append((start, end, text))
        limit = self.options.prompt_chars
        while len(self._history) > 1 and sum(len(t) + 1 for t in self._history) - len(
            self._history[0]
        ) > limit:
            self._history.popleft()

    def _words_of_prefix(self, pending: _PendingFinal,
                         result: DecodeResult) -> tuple[DecodedWord, ...]:
        n = len(pending.stable.split())
        return result.words[:n] if len(result.words) >= n else ()

    def _heard_words(self, pending: _PendingFinal,
                     result: DecodeResult) -> tuple[str, tuple[DecodedWord, ...]]:
        """The final's text and words, less words placed where the VAD heard no voice."""
        text = clean(result.text)
        if not text.startswith(pending.stable):
            text = f"{pending.stable} {text}".strip()  # never contradict what was stable
        words = result.words
        surface = text.split()
        if not words or len(words) != len(surface):
            return text, words  # timings do not map one to one onto words: keep all
        n_stable = len(pending.stable.split())
        frame = self.segmenter.frame_len / MODEL_SAMPLE_RATE
        margin = self.options.word_vad_margin_s
        kept_words: list[DecodedWord] = []
        kept_text: list[str] = []
        for i, (word, written) in enumerate(zip(words, surface)):
            lo = max(0, int((word.start - margin) / frame))
            hi = max(lo + 1, int((word.end + margin) / frame) + 1)
            if i < n_stable or pending.voiced[lo:hi].any():
                kept_words.append(word)
                kept_text.append(written)
        return " ".join(kept_text), tuple(kept_words)


def without_context(result: DecodeResult, context: _Context,
                    prefixed: bool = False) -> DecodeResult:
    """A final decoded with context, as if decoded alone: new words only, on its own clock."""
    if not context.samples:
        return result
    if not prefixed:
        return _after(result, context.samples / MODEL_SAMPLE_RATE)
    words_all = clean(result.text).split()
    n = len(context.text.split())
    offset = context.samples / MODEL_SAMPLE_RATE
    # After a forced prefix Whisper sometimes says the context's last words again: words
    # that end in the context's audio are such echoes, not the utterance's.
    margin = 0.1
    if len(result.words) == len(words_all):
        keep = [i for i in range(n, len(words_all)) if result.words[i].end > offset + margin]
        # ... or that repeat the context's last words at once, whatever their timings
        said, echo = [w.lower().strip(".,!?") for w in context.text.split()], 0
        new = [words_all[i].lower().strip(".,!?") for i in keep]
        for size in range(min(len(said), len(new)), 1, -1):
            if new[:size] == said[-size:]:
                echo = size
                break
        keep = keep[echo:]
        text = " ".join(words_all[i] for i in keep)
        timed = tuple(result.words[i] for i in keep)
    else:  # timings that do not map one to one onto words: keep those after the context
        text = " ".join(words_all[n:])
        timed = tuple(w for w in result.words if w.end > offset + margin)
    words = tuple(
        DecodedWord(w.word, max(0.0, w.start - offset), max(0.0, w.end - offset), w.probability)
        for w in timed
    )
    return replace(result, text=text, words=words, compression_ratio=compression_ratio(text))


def _after(result: DecodeResult, offset: float) -> DecodeResult:
    """The words whose middle lies after `offset` (the utterance's start), re-timed from it."""
    kept = tuple(
        DecodedWord(w.word, max(0.0, w.start - offset), max(0.0, w.end - offset), w.probability)
        for w in result.words if (w.start + w.end) / 2 > offset
    )
    text = clean("".join(w.word for w in kept))
    return replace(result, text=text, words=kept, compression_ratio=compression_ratio(text))
