"""How a caption session behaves: the policy's options, and what the server decided per stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from captioncast.core.coverage import CoverageOptions
from captioncast.core.decoding import DecodeThresholds
from captioncast.core.repetition import LoopOptions
from captioncast.core.segmenter import SegmenterOptions


@dataclass(frozen=True)
class PolicyOptions(DecodeThresholds):
    partial_interval_s: float = 0.5  # re-decode the open utterance at most this often
    min_partial_audio_s: float = 0.4  # shorter audio gives Whisper too little to go on
    final_tail_s: float = 0.2  # silence after the last voiced frame helps Whisper end cleanly
    # Speech cut without a pause (segmenter.max_utterance_s) may be cut inside a word: the
    # utterance before the cut hears this much audio past it and keeps the words whose
    # middle is before it. The one after starts at the cut: Whisper skips a word begun
    # mid-way at the start of its audio, and with it the next words (bench/word_audit.py).
    cut_overlap_s: float = 0.3
    prompt_chars: int = 200  # earlier finals to condition on; more slows decoding
    # Only finals decoded at least this surely are the prompt of later ones: a misheard
    # name in the prompt is put in place of the next name ("Mister Carkeur ... Mister
    # John Carkeur").
    prompt_min_logprob: float = float("-inf")
    # On a breath or a click (a fraction of a second of "speech"), tiny.en often says
    # "Thank you." with a high no-speech probability but a confident-looking log-prob, so
    # for utterances this short the no-speech probability alone decides.
    short_speech_s: float = 1.0
    # ... and a decode of it with more words than 1 + this many per second of it is no
    # speech (fast talkers say about 5 words a second).
    max_words_per_s: float = 7.0
    word_vad_margin_s: float = 0.2  # word timings are approximate; allow this much slack
    # `stable`: a word must be agreed by this many consecutive partial hypotheses, and
    # this many words at the end of a hypothesis are never stable (the audio may end
    # inside them, and Whisper guesses most at the edge).
    stable_agreement: int = 3
    stable_holdback_words: int = 2
    # ... and it must come from a decode whose average log-probability is at least this:
    # consecutive greedy decodes forced onto the same prefix agree with each other easily,
    # so an unsure one's agreement is no evidence (bench/policy_sim.py, continuous
    # speech: stable words revised by the final 26 % -> 3 % at -0.5, clean read unchanged).
    stable_min_logprob: float = -0.5
    # A partial shows its hypothesis less this many last words, unless the previous
    # hypothesis said them too (at least one word while nothing is stable, so a caption
    # starts at once). Whisper guesses most at the edge of the audio: with 1, viewers saw
    # 44 % fewer words change (bench/word_audit.py, continuous speech: 34.8 -> 19.4 a
    # minute) for 0.14 s more until a word first shows (p50, audio clock).
    partial_holdback_words: int = 1
    # Context: a final may be decoded with up to this much of the earlier finals' audio in
    # front of it, their text as the forced prefix, and only the new words kept. Off by
    # default: it helped in bench/policy_sim.py but hurt live finals (stream_bench,
    # continuous WER 0.150 without, 0.239 with 10 s): after the forced prefix Whisper
    # sometimes ends early, dropping an utterance's last words, or says a phrase twice.
    context_s: float = 0.0
    context_window_s: float = 15.0  # utterance and context together fit the encoder window
    # Force the context's text as the decoder's prefix (else it is only in the prompt and
    # the context's words are cut off by their timings).
    context_prefix: bool = True
    # Protocol 1 behaviour, for comparison in bench/policy_sim.py only: force `stable`
    # as the prefix of the final's decode too.
    final_keeps_stable: bool = False
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    loops: LoopOptions = field(default_factory=LoopOptions)
    coverage: CoverageOptions = field(default_factory=CoverageOptions)


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
