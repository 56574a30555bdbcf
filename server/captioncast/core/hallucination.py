"""What Whisper says without speech: decodes to drop, and words placed where no voice was heard."""

from __future__ import annotations

import numpy as np

from captioncast.core.decoding import DecodedWord, DecodeResult


def is_hallucination(result: DecodeResult, voiced_s: float, *, no_speech_threshold: float,
                     log_prob_threshold: float, compression_ratio_threshold: float,
                     short_speech_s: float, max_words_per_s: float = 0.0,
                     duration_s: float = 0.0) -> bool:
    """Whisper's own no-speech and loop rules, with three changes for very short speech.

    On a breath or a click (a fraction of a second of "speech"), tiny.en often says
    "Thank you." with a high no-speech probability but a confident-looking log-prob, so
    for utterances shorter than `short_speech_s` the no-speech probability alone decides.
    And more words than the utterance's `duration_s` could hold are not speech at all:
    after a client's flush (Deepgram's `Finalize`) a breath opened an utterance of 0.28 s
    that came out "Thank you very much." with a no-speech probability of only 0.44. (The
    VAD's voiced time is no measure of it: "Right then." was 0.1 s of it in 0.64 s.)
    """
    silent = result.no_speech_prob > no_speech_threshold and (
        result.avg_logprob < log_prob_threshold or voiced_s < short_speech_s
    )
    if voiced_s < short_speech_s:
        # On a breath a decode that failed Whisper's own test of gibberish even after its
        # fallbacks is no speech either ("Thank you." at -1.04 after the flush above).
        silent = silent or result.avg_logprob < log_prob_threshold
        if max_words_per_s > 0 and duration_s > 0:
            silent = silent or len(result.text.split()) > 1 + duration_s * max_words_per_s
    return silent or result.compression_ratio > compression_ratio_threshold


def voiced_words(surface: list[str], words: tuple[DecodedWord, ...], voiced: np.ndarray,
                 frame_s: float, margin_s: float, protected: int
                 ) -> tuple[list[str], tuple[DecodedWord, ...]]:
    """The words (surface forms and timings, one to one) whose time the VAD heard voice in.

    `voiced` is the VAD's mask over the utterance's frames of `frame_s` each; word timings
    are approximate, so `margin_s` of slack is allowed. The first `protected` words are
    kept whatever their timings (what was already shown as stable).
    """
    kept_words: list[DecodedWord] = []
    kept_text: list[str] = []
    for i, (word, written) in enumerate(zip(words, surface)):
        lo = max(0, int((word.start - margin_s) / frame_s))
        hi = max(lo + 1, int((word.end + margin_s) / frame_s) + 1)
        if i < protected or voiced[lo:hi].any():
            kept_words.append(word)
            kept_text.append(written)
    return kept_text, tuple(kept_words)
