"""An ended utterance's decode made into its final: filters, loop guard, prompt history, counts."""

from __future__ import annotations

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.decoding import DecodedWord, DecodeResult
from captioncast.core.hallucination import is_hallucination, voiced_words
from captioncast.core.history import FinalHistory
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.repetition import RepetitionGuard
from captioncast.core.text import agreed_prefix, clean, revised_words
from captioncast.core.utterance import PendingFinal
from captioncast.protocol.events import Final, Word


class FinalJudge:
    """Decides what a final says, and keeps what later decodes are prompted with."""

    def __init__(self, config: SessionConfig, options: PolicyOptions, frame_s: float) -> None:
        self.config = config
        self.options = options
        self.frame_s = frame_s  # the VAD's frame, for its masks
        self.guard = RepetitionGuard(options.loops)
        self.history = FinalHistory(options.prompt_chars,
                                    int(options.context_s * MODEL_SAMPLE_RATE))
        self.finals_sent = 0
        # Words shown as `stable` in a partial, and those of them the final changed.
        self.stable_words_shown = 0
        self.stable_words_revised = 0
        # Flicker: words a partial put on screen that the next partial or the final changed
        # or took away, and the words partials showed.
        self.shown_words = 0
        self.shown_words_changed = 0
        self.empty_finals = 0  # finals that said nothing (no speech after all)
        self.final_words = 0  # words the finals said: with the audio's length, a reading rate

    def voiced_s(self, voiced: np.ndarray) -> float:
        """Seconds of voice in a VAD mask."""
        return float(voiced.sum()) * self.frame_s

    def is_hallucination(self, result: DecodeResult, voiced_s: float,
                         loops_too: bool = True, duration_s: float = 0.0) -> bool:
        """Whisper's no-speech rule, and with `loops_too` its compression (loop) rule;
        with the utterance's `duration_s`, more words than it could hold."""
        opts = self.options
        ratio = opts.compression_ratio_threshold if loops_too else float("inf")
        return is_hallucination(result, voiced_s, no_speech_threshold=opts.no_speech_threshold,
                                log_prob_threshold=opts.log_prob_threshold,
                                compression_ratio_threshold=ratio,
                                short_speech_s=opts.short_speech_s,
                                max_words_per_s=opts.max_words_per_s,
                                duration_s=duration_s)

    def final(self, pending: PendingFinal, seq: int) -> Final:
        """The final event of an ended utterance whose decode is done (or failed)."""
        # A failed decode leaves what the partials agreed on: the best there is.
        text, language = pending.stable or pending.shown_stable, self.config.language or "en"
        words: tuple[DecodedWord, ...] = ()
        result = pending.result
        if result is not None:
            language = result.language
            # A final that loops is not dropped whole, as a partial is: the loop guard
            # below cuts the loop and keeps what was said before it ("here are some more
            # words, words, words, words" decoded into a loop lost 8 s of real speech).
            speech_s = (pending.speech_end - pending.start) / MODEL_SAMPLE_RATE
            if not self.is_hallucination(result, self.voiced_s(pending.voiced),
                                         loops_too=False, duration_s=speech_s):
                text, words = self._heard_words(pending, result)
            elif pending.stable:
                words = self._words_of_prefix(pending, result)
            else:
                text = ""  # the whole utterance's decode heard no speech: it decides
        text, words = self._guard_loops(pending, text, words)
        self._count_revisions(pending.shown_stable, text)
        self.shown_words_changed += revised_words(pending.shown.split(), text.split())
        self.finals_sent += 1
        self.final_words += len(text.split())
        self.empty_finals += not text
        offset = pending.audio_start / MODEL_SAMPLE_RATE
        wire_words = tuple(
            Word(w.word.strip(), offset + w.start, offset + w.end, w.probability) for w in words
        )
        # The first word, not the pre-roll, is where the caption starts.
        start = pending.start / MODEL_SAMPLE_RATE
        if wire_words:
            start = max(start, min(wire_words[0].start, pending.speech_end / MODEL_SAMPLE_RATE))
        return Final(
            seq,
            utterance=pending.index,
            start=start,
            end=pending.speech_end / MODEL_SAMPLE_RATE,
            text=text,
            language=language,
            words=wire_words,
            include_words=self.config.words,
        )

    def count_shown(self, shown: str, replacement: str) -> None:
        """A partial or final replaced `shown` on screen with `replacement`."""
        before, after = shown.split(), replacement.split()
        self.shown_words_changed += revised_words(before, after)
        if after[: len(before)] != before or len(after) > len(before):
            self.shown_words += max(0, len(after) - agreed_prefix(before, after))

    def _count_revisions(self, shown_stable: str, final_text: str) -> None:
        """Words a display held still that the final changed (case and punctuation aside)."""
        shown = shown_stable.split()
        self.stable_words_shown += len(shown)
        self.stable_words_revised += revised_words(shown, final_text.split())

    def _guard_loops(self, pending: PendingFinal, text: str, words: tuple[DecodedWord, ...]
                     ) -> tuple[str, tuple[DecodedWord, ...]]:
        """Cut repeats out of a final; after a loop, start the prompt afresh."""
        surface = text.split()
        # Words the partials agreed on and the final heard too were heard by independent
        # decodes: a loop or a copy of the last final they are not.
        protected = max(len(pending.stable.split()),
                        agreed_prefix(pending.shown_stable.split(), surface))
        verdict = self.guard.check(surface, protected=protected,
                                    duration=(pending.speech_end - pending.start)
                                    / MODEL_SAMPLE_RATE)
        reset = verdict.reset_prompt or pending.looped
        if pending.looped and not verdict.looped:
            self.guard.loops += 1
        if reset:
            # A loop in the prompt makes the next decode loop too: forget what led to it.
            self.history.clear()
        if not verdict.looped:
            sure = pending.result is not None and \
                pending.result.avg_logprob >= self.options.prompt_min_logprob
            if not reset and sure:
                self.history.add(pending.start, pending.audio_end, text)
            return text, words
        text = " ".join(surface[i] for i in verdict.keep)
        if len(words) == len(surface):
            words = tuple(words[i] for i in verdict.keep)
        elif words:
            words = ()  # timings that do not map onto words cannot be cut along with them
        return text, words

    def _words_of_prefix(self, pending: PendingFinal,
                         result: DecodeResult) -> tuple[DecodedWord, ...]:
        n = len(pending.stable.split())
        return result.words[:n] if len(result.words) >= n else ()

    def _heard_words(self, pending: PendingFinal,
                     result: DecodeResult) -> tuple[str, tuple[DecodedWord, ...]]:
        """The final's text and words, less words placed where the VAD heard no voice."""
        text = clean(result.text)
        if not text.startswith(pending.stable):
            text = f"{pending.stable} {text}".strip()  # never contradict what was stable
        words = result.words
        surface = text.split()
        if not words or len(words) != len(surface):
            return text, words  # timings do not map one to one onto words: keep all
        kept_text, kept_words = voiced_words(
            surface, words, pending.voiced, self.frame_s,
            self.options.word_vad_margin_s, protected=len(pending.stable.split()))
        if pending.keep_until:
            kept_text, kept_words = self._own_words(pending, kept_text, kept_words)
        return " ".join(kept_text), kept_words

    @staticmethod
    def _own_words(pending: PendingFinal, surface: list[str], words: tuple[DecodedWord, ...]
                   ) -> tuple[list[str], tuple[DecodedWord, ...]]:
        """An utterance cut without a pause heard audio past the cut: a word whose middle
        lies past it is the next utterance's."""
        offset = pending.audio_start / MODEL_SAMPLE_RATE
        cut = pending.keep_until / MODEL_SAMPLE_RATE
        kept = [i for i, w in enumerate(words) if offset + (w.start + w.end) / 2 < cut]
        return [surface[i] for i in kept], tuple(words[i] for i in kept)
