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

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.buffer import AudioBuffer
from captioncast.core.context import Context, choose_context, context_audio, without_context
from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.finals import FinalJudge
from captioncast.core.gaps import Gaps
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.quality import CaptionQuality
from captioncast.core.segmenter import (
    Segmenter,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from captioncast.core.utterance import OpenUtterance, PendingFinal, Speculation, shown_text
from captioncast.errors import CaptioncastError
from captioncast.protocol.events import End, Error, Event, Partial, Ready, Sequencer


@dataclass(frozen=True)
class Cancel:
    """A decode request whose result is no longer wanted."""

    request_id: int


Action = Event | DecodeRequest | Cancel


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
        self._open: OpenUtterance | None = None
        self._finals: OrderedDict[int, PendingFinal] = OrderedDict()
        self._judge = FinalJudge(config, self.options,
                                 self.segmenter.frame_len / MODEL_SAMPLE_RATE)
        self.history = self._judge.history
        self._ending = False
        self.finished = False
        self.partials_sent = 0
        self.shedding = False  # a saturated server: finals only (shed_partials)
        self.gaps = Gaps(config, self.options, self._judge)  # voice finals' words skipped

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
    def speaking(self) -> bool:
        """An utterance is open or its finals are pending: this session costs decoding."""
        return self._open is not None or bool(self._finals)

    def shed_partials(self, shed: bool = True) -> list[Action]:
        """Ask no partial decodes (finals go on as ever), or ask them again; a partial in
        flight is cancelled, since a busy server would answer it late."""
        self.shedding = shed
        open_ = self._open
        if not shed or open_ is None or open_.partial_request is None:
            return []
        request, open_.partial_request = open_.partial_request, None
        return [Cancel(request)]

    @property
    def loops_caught(self) -> int:
        return self._judge.guard.loops

    @property
    def finals_sent(self) -> int:
        return self._judge.finals_sent

    @property
    def stable_words_shown(self) -> int:
        """Words shown as `stable` in a partial ..."""
        return self._judge.stable_words_shown

    @property
    def stable_words_revised(self) -> int:
        """... and those of them the final changed."""
        return self._judge.stable_words_revised

    def quality(self) -> CaptionQuality:
        """How the captions read so far (core/quality.py)."""
        judge = self._judge
        return CaptionQuality(
            audio_s=self.duration, finals=judge.finals_sent, empty_finals=judge.empty_finals,
            final_words=judge.final_words, shown_words=judge.shown_words,
            shown_words_changed=judge.shown_words_changed,
            stable_words=judge.stable_words_shown, stable_words_revised=judge.stable_words_revised,
            gaps_filled=self.gaps.filled)

    @property
    def open_utterance(self) -> int | None:
        """The index of the utterance being spoken, if one is open."""
        return None if self._open is None else self._open.index

    @property
    def in_speech(self) -> bool:
        """The segmenter is inside an utterance."""
        return self.segmenter.in_speech

    def reconfigure(self, config: SessionConfig) -> None:
        """New settings mid-stream (a client's configure): from the next decode on."""
        self.config = self._judge.config = self.gaps.config = config

    def pause_start(self) -> int | None:
        """Where the open utterance's voice stopped, while it is in a pause."""
        seg = self.segmenter
        return seg.pause_start if self._open is not None else None

    def end_at_pause(self) -> list[Action]:
        """End the open utterance where its pause began (its turn is over): the final
        decoded when the pause began is the final."""
        end = self.segmenter.end_at_pause()
        return [] if end is None else self._end_utterance(end.speech_end, continues=False)

    def audio(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) still held (a turn's last seconds for the turn model)."""
        return self._buffer.slice(start, end)

    @property
    def speech_onset(self) -> int:
        """Where the VAD last heard voice begin (the utterance starts a pre-roll before)."""
        return self.segmenter.onset

    def open_span(self) -> tuple[int, int] | None:
        """The open utterance's index and first sample, if one is open."""
        return None if self._open is None else (self._open.index, self._open.start)

    def voiced_mask(self, start: int, end: int) -> np.ndarray:
        """Per 20 ms frame of samples [start, end): whether the VAD heard voice."""
        return self.segmenter.voiced_mask(start, end)

    @property
    def utterances_begun(self) -> int:
        """Utterances opened so far: the next one gets this index."""
        return self._next_utterance

    @property
    def position(self) -> int:
        """Samples received so far: the audio clock."""
        return self._buffer.end

    @property
    def duration(self) -> float:
        return self._buffer.end / MODEL_SAMPLE_RATE

    @property
    def samples_held(self) -> int:
        """Samples still kept for decodes to come: what a long stream costs in memory."""
        return self._buffer.held

    def feed(self, audio: np.ndarray) -> list[Action]:
        """16 kHz mono float32 audio, in order."""
        if self._ending:
            return []
        self._buffer.append(audio)
        actions: list[Action] = []
        for boundary in self.segmenter.push(audio):
            if isinstance(boundary, SpeechStart):
                self._open = OpenUtterance(
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

    def cut_at(self, sample: int) -> list[Action]:
        """Another voice from `sample` on: the open utterance ends there, the rest of it
        becomes the next utterance (PROTOCOL.md: a final holds one speaker's words)."""
        end = self.segmenter.cut_at(sample)
        return [] if end is None else self._end_utterance(end.speech_end, continues=True)

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
            if pending.gap_request == request_id:
                self.gaps.fill(pending, result)
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
            if pending.gap_request == request_id:
                pending.gap_request = 0  # the final goes out with what its decode heard
                return self._emit_ready_finals()
        return []

    # -- utterances ---------------------------------------------------------------

    def _take_utterance(self) -> int:
        index = self._next_utterance
        self._next_utterance += 1
        return index

    def _prompt(self, context: Context | None = None) -> str:
        return f"{self.config.prompt} {self.history.prompt(context)}".strip()

    def _request(self, kind: Literal["partial", "final"], utterance: int, audio: np.ndarray,
                 prefix: str, context: Context | None = None,
                 speculative: bool = False) -> DecodeRequest:
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
            speculative=speculative,
        )

    def _maybe_partial(self) -> list[Action]:
        open_ = self._open
        if (
            open_ is None
            or not self.config.interim
            or self.shedding
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

    def _apply_partial(self, open_: OpenUtterance, result: DecodeResult) -> list[Action]:
        voiced = self.segmenter.voiced_mask(open_.start, open_.partial_audio_end)
        if self._judge.is_hallucination(
                result, self._judge.voiced_s(voiced),
                duration_s=(open_.partial_audio_end - open_.start) / MODEL_SAMPLE_RATE):
            return []
        full = shown_text(open_, result, self.options, self._judge.guard)
        if self._finals or not full:
            return []  # an earlier utterance's final goes out first; a later partial replaces this
        self.partials_sent += 1
        self._judge.count_shown(open_.shown, full)
        open_.shown_stable, open_.shown = open_.stable, full
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
            self._judge.voiced_s(self.segmenter.voiced_mask(open_.start, audio_end)))
        request = self._request("final", open_.index,
                                context_audio(audio, audio_from, open_.start, context),
                                self._final_prefix(open_), context, speculative=True)
        open_.speculation = Speculation(request.request_id, speech_end, open_.stable,
                                         self.finals_sent, context)
        return [request]

    def _context_room(self, start: int) -> int:
        """Where the audio a final may need begins: context room before its start."""
        room = int(self.options.context_s * MODEL_SAMPLE_RATE)
        return max(self._buffer.start, start - room)

    def _choose_context(self, start: int, audio_from: int, audio_end: int,
                        voiced_s: float) -> Context:
        """The earliest run of recent finals, up to now, that fits in front of the utterance."""
        opts = self.options
        # Whisper's no-speech probability would hear the context's speech: a breath or a
        # click after speech is judged alone, as Whisper's own rule needs.
        # With the language detected per utterance, the context's audio would decide it.
        if (opts.context_s <= 0 or not self.history or voiced_s < opts.short_speech_s
                or self.config.language is None):
            return Context()
        window = int(opts.context_window_s * MODEL_SAMPLE_RATE) - self._tail()
        return choose_context(self.history, start, audio_from, audio_end, window)

    def _final_prefix(self, open_: OpenUtterance) -> str:
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
        overlap = int(self.options.cut_overlap_s * MODEL_SAMPLE_RATE)
        audio_end = min(speech_end + (overlap if continues else self._tail()), self.position)
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
            pending = PendingFinal(
                open_.index, open_.start, speech_end, open_.start, audio_end, prefix,
                open_.shown_stable, voiced, speculation.request_id,
                None if result is None
                else without_context(result, speculation.context, self.options.context_prefix),
                context=speculation.context, shown=open_.shown,
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
            pending = PendingFinal(
                open_.index, open_.start, speech_end, open_.start, audio_end, prefix,
                open_.shown_stable, voiced, 0, audio=audio, audio_from=audio_from,
                shown=open_.shown, keep_until=speech_end if continues and overlap else 0,
            )
            # Finals are decoded in order, each prompted with the text of those before it,
            # so a file sent faster than real time is captioned as well as a live one.
            if not self._finals:
                actions.append(self._ask(pending))
        self._finals[open_.index] = pending
        self._open = (
            OpenUtterance(self._take_utterance(), speech_end, partial_audio_end=speech_end)
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
        floor = self.position - keep_back
        if self._open is not None:
            floor = min(floor, self._open.start)
        # Context always begins at a final's start, so the room is kept only from the
        # earliest final still in it: a silent session holds its pre-roll, not 10 s of
        # silence (200 muted microphones would otherwise hold 128 MB of it).
        starts = [f.start for f in self.history] + [p.start for p in self._finals.values()]
        keep = min((s for s in starts if s >= floor - room), default=floor)
        # A pending final's audio may be decoded again where its words skipped speech.
        keep = min([keep, *(p.audio_start for p in self._finals.values())])
        self._buffer.forget_before(max(0, min(keep, floor)))

    # -- finals -------------------------------------------------------------------

    def _ask(self, pending: PendingFinal) -> DecodeRequest:
        """Ask for a final once the finals before it are out: their text is its context."""
        assert pending.audio is not None
        context = self._choose_context(pending.start, pending.audio_from, pending.audio_end,
                                       self._judge.voiced_s(pending.voiced))
        audio = context_audio(pending.audio, pending.audio_from, pending.start, context)
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
            if not pending.coverage_checked:
                pending.coverage_checked = True
                gap_request = self.gaps.request(pending, self._buffer, self._next_request + 1)
                if gap_request is not None:
                    self._next_request += 1
                    actions.append(gap_request)
            if pending.gap_request:
                break
            del self._finals[pending.index]
            if pending.failed is not None:
                actions.append(
                    Error(self._seq.next(), code="internal",
                          message=f"decoding utterance {pending.index} failed: {pending.failed}")
                )
            actions.append(self._judge.final(pending, self._seq.next()))
        if self._ending and not self._finals and self._open is None and not self.finished:
            self.finished = True
            actions.append(
                End(self._seq.next(), duration=self.duration, utterances=self._next_utterance)
            )
        return actions
