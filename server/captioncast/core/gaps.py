"""The second decode of voice a final's words skipped: asking for it, and taking its words.

`core/coverage.py` finds the stretch; this asks the engine for it with what a decode
request needs (the buffered audio, a prompt) and judges the answer before it is merged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from captioncast.core.audio import MODEL_SAMPLE_RATE
from captioncast.core.buffer import AudioBuffer
from captioncast.core.coverage import find_gap, merge_gap
from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.finals import FinalJudge
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.repetition import collapse_loops
from captioncast.core.text import clean, compression_ratio, prompt_tail
from captioncast.core.utterance import PendingFinal


class Gaps:
    """One session's decodes of skipped voice; `asked` and `filled` count them."""

    def __init__(self, config: SessionConfig, options: PolicyOptions, judge: FinalJudge) -> None:
        self.config = config
        self.options = options
        self.judge = judge
        self.asked = 0
        self.filled = 0

    def request(self, pending: PendingFinal, buffer: AudioBuffer,
                request_id: int) -> DecodeRequest | None:
        """A decode of the voice the final's words skipped, if they skipped any."""
        opts = self.options.coverage
        result = pending.result
        if not opts.enabled or result is None or pending.failed is not None:
            return None
        words = result.words
        surface = clean(result.text).split()
        if len(words) != len(surface):
            return None  # no timings to tell what the text covers
        # A loop's repeats lie over real voice that the loop guard will cut them from: the
        # loop is cut here, so that the voice under it is heard again ("some more word,
        # word, word, word" said five times came out nine, and was cut to one).
        keep = collapse_loops(surface, self.options.loops)
        if len(keep) < len(surface):
            words = tuple(words[i] for i in keep)
            text = " ".join(surface[i] for i in keep)
            result = pending.result = replace(result, text=text, words=words,
                                              compression_ratio=compression_ratio(text))
            pending.looped = True
        duration = (pending.audio_end - pending.audio_start) / MODEL_SAMPLE_RATE
        gap = find_gap(words, pending.voiced, self.judge.frame_s, duration, opts)
        if gap is None or self.judge.is_hallucination(result,
                                                      self.judge.voiced_s(pending.voiced)):
            return None
        lo = max(pending.audio_start + int(gap.start * MODEL_SAMPLE_RATE), buffer.start)
        hi = pending.audio_start + int(gap.end * MODEL_SAMPLE_RATE)
        if hi - lo < int(opts.min_voiced_s * MODEL_SAMPLE_RATE):
            return None
        audio = buffer.slice(lo, min(hi, buffer.end))
        if gap.end * MODEL_SAMPLE_RATE >= pending.audio_end - pending.audio_start:
            tail = np.zeros(int(self.options.final_tail_s * MODEL_SAMPLE_RATE), np.float32)
            audio = np.concatenate([audio, tail])
        # What came before the gap is its prompt; a skipped head gets none, since the
        # prompt may be what led the decoder past it.
        said = clean(result.text).split()[: gap.before]
        prompt = prompt_tail([self.config.prompt, " ".join(said)], self.options.prompt_chars)
        pending.gap, pending.gap_request = gap, request_id
        self.asked += 1
        return DecodeRequest(
            request_id=request_id, kind="final", utterance=pending.index, audio=audio,
            prompt=prompt, language=self.config.language, task=self.config.task,
            word_timestamps=True,
        )

    def fill(self, pending: PendingFinal, heard: DecodeResult) -> None:
        """Put what the gap's decode heard into the pending final's result."""
        pending.gap_request = 0
        gap, result = pending.gap, pending.result
        if gap is None or result is None or self.judge.is_hallucination(
                heard, gap.voiced_s, duration_s=gap.end - gap.start):
            return
        # A second opinion on audio the first decode did cover, with a stretched word: only
        # a sure one is taken (a drawn-out "Maaaan-tree-all", 4.6 s as one word, heard
        # again as "Mantria..." at an average log-probability of -1.4).
        if heard.avg_logprob < self.options.log_prob_threshold:
            return
        pending.result = merge_gap(result, gap, heard)
        self.filled += 1
