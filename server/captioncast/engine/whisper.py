"""faster-whisper behind the Decoder interface: one utterance, one window, forced prefix."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import merge_punctuations

from captioncast.core.decoding import DecodedWord, DecodeRequest, DecodeResult
from captioncast.core.text import compression_ratio
from captioncast.engine.decode_options import DecodeOptions
from captioncast.engine.models import DevicePlan, ModelLocation, load_failure
from captioncast.engine.native_memory import MallocTrimmer
from captioncast.errors import ModelError

log = logging.getLogger("captioncast.whisper")

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


class WhisperDecoder:
    """Decodes one utterance per call; safe to call from several threads."""

    def __init__(self, location: ModelLocation, plan: DevicePlan, cpu_threads: int = 0,
                 options: DecodeOptions | None = None) -> None:
        self.options = options or DecodeOptions()
        self._name = location.name
        # Workers share the cores: each decode thread pool gets its slice.
        threads = cpu_threads or max(1, (os.cpu_count() or 1) // max(1, plan.workers))
        try:
            self.model = WhisperModel(
                location.path,
                device=plan.device,
                compute_type=plan.compute_type,
                cpu_threads=threads if plan.device == "cpu" else 0,
                num_workers=plan.workers,
            )
        except Exception as exc:  # CTranslate2 and the hub raise many kinds
            raise ModelError(load_failure(location, exc)) from exc
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._lock = threading.Lock()
        self.memory = MallocTrimmer(self.options.malloc_trim_s)

    @property
    def name(self) -> str:
        return self._name

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def _tokenizer(self, language: str, task: str) -> Tokenizer:
        key = (language, task)
        with self._lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = Tokenizer(
                    self.model.hf_tokenizer, self.multilingual, task=task, language=language
                )
            return self._tokenizers[key]

    def decode(self, request: DecodeRequest) -> DecodeResult:
        try:
            return self._decode(request)
        finally:
            self.memory.after_decode()

    def _decode(self, request: DecodeRequest) -> DecodeResult:
        model = self.model
        audio = request.audio.astype(np.float32, copy=False)
        features = pad_or_trim(model.feature_extractor(audio), self._window_frames(len(audio)))
        encoder_output = model.encode(features)

        language, language_probability = "en", 1.0
        if self.multilingual:
            if request.language:
                language = request.language
            else:
                ranked = model.model.detect_language(encoder_output)[0]
                token, language_probability = ranked[0]
                language = token[2:-2]
        tokenizer = self._tokenizer(language, request.task)
        prompt, forced = self._prompt(tokenizer, request)
        tokens, avg_logprob, no_speech_prob, ratio, temperature = self._generate(
            encoder_output, prompt, tokenizer, request.kind == "final", forced, request.effort
        )
        text_tokens = self._text_tokens(tokens, prompt, forced, tokenizer)
        words: tuple[DecodedWord, ...] = ()
        if request.word_timestamps and text_tokens:
            words = self._align(tokenizer, [text_tokens], encoder_output,
                                [len(audio)])[0]
        return DecodeResult(
            text=tokenizer.decode(text_tokens).strip(),
            language=language,
            words=words,
            avg_logprob=avg_logprob,
            no_speech_prob=no_speech_prob,
            compression_ratio=ratio,
            language_probability=float(language_probability),
            temperature=temperature,
        )

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """Requests of one kind, task, language and effort, in as few model calls as may be.

        CTranslate2 needs `<|startoftranscript|>` at one position in every prompt of a
        batch: requests with no earlier text go in a call of their own, and the others
        keep as many of their latest prompt tokens as the shortest of them has.
        """
        first = requests[0]
        if len(requests) == 1 or (self.multilingual and first.language is None):
            return [self.decode(r) for r in requests]
        try:
            return self._decode_batch(requests)
        finally:
            self.memory.after_decode()

    def _decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        first = requests[0]
        language = (first.language or "en") if self.multilingual else "en"
        tokenizer = self._tokenizer(language, first.task)
        previous = [self._previous(tokenizer, r) for r in requests]
        results: list[DecodeResult | None] = [None] * len(requests)
        for group in ([i for i, p in enumerate(previous) if not p],
                      [i for i, p in enumerate(previous) if p]):
            if len(group) == 1:
                results[group[0]] = self.decode(requests[group[0]])
            elif group:
                keep = min(len(previous[i]) for i in group)
                together = self._decode_together(
                    [requests[i] for i in group],
                    [previous[i][len(previous[i]) - keep:] for i in group], tokenizer, language)
                for i, result in zip(group, together, strict=True):
                    results[i] = result
        return [r for r in results if r is not None]

    def _decode_together(self, requests: list[DecodeRequest], previous: list[list[int]],
                         tokenizer: Tokenizer, language: str) -> list[DecodeResult]:
        """One encode, one generate and one alignment for all of `requests`.

        A result that fails Whisper's checks is decoded again alone, with the fallback
        temperatures of `decode`: rare, and the batch need not wait on sampling.
        """
        model, opts, first = self.model, self.options, requests[0]
        audios = [r.audio.astype(np.float32, copy=False) for r in requests]
        frames = max(self._window_frames(len(a)) for a in audios)
        features = np.stack([pad_or_trim(model.feature_extractor(a), frames) for a in audios])
        encoder_output = model.encode(features)
        prompts = [self._prompt(tokenizer, r, p) for r, p in zip(requests, previous, strict=True)]
        final = first.kind == "final"
        generated = model.model.generate(
            encoder_output, [p for p, _ in prompts],
            max_length=min(max(len(p) for p, _ in prompts) + opts.max_new_tokens,
                           model.max_length),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=[-1], beam_size=self._beam(final, first.effort),
        )
        candidates = [self._candidate(g, prompt, forced, tokenizer, 0.0)
                      for g, (prompt, forced) in zip(generated, prompts, strict=True)]
        text_tokens = [self._text_tokens(c[0], prompt, forced, tokenizer)
                       for c, (prompt, forced) in zip(candidates, prompts, strict=True)]
        aligned: list[tuple[DecodedWord, ...]] = [()] * len(requests)
        # one batch call; a request that wants no words, or has none, aligns nothing
        wanted = [t if r.word_timestamps else [] for r, t in zip(requests, text_tokens)]
        if any(wanted):
            aligned = self._align(tokenizer, wanted, encoder_output, [len(a) for a in audios])
        results = []
        for request, candidate, tokens, words in zip(requests, candidates, text_tokens,
                                                     aligned, strict=True):
            if final and not self._passes(candidate):
                results.append(self.decode(request))
                continue
            _, avg_logprob, no_speech_prob, ratio, temperature = candidate
            results.append(DecodeResult(
                text=tokenizer.decode(tokens).strip(), language=language, words=words,
                avg_logprob=avg_logprob, no_speech_prob=no_speech_prob,
                compression_ratio=ratio, temperature=temperature,
            ))
        return results

    @staticmethod
    def _previous(tokenizer: Tokenizer, request: DecodeRequest) -> list[int]:
        return tokenizer.encode(" " + request.prompt) if request.prompt else []

    def _prompt(self, tokenizer: Tokenizer, request: DecodeRequest,
                previous: list[int] | None = None) -> tuple[list[int], int]:
        """The decoder's prompt for `request` (its earlier text as `previous` tokens, when
        given), and how many of its tokens are the forced prefix."""
        if previous is None:
            previous = self._previous(tokenizer, request)
        prompt = self.model.get_prompt(
            tokenizer, previous, without_timestamps=True, prefix=request.prefix or None
        )
        return prompt, len(prompt) - prompt.index(tokenizer.no_timestamps) - 1

    @staticmethod
    def _text_tokens(tokens: list[int], prompt: list[int], forced: int,
                     tokenizer: Tokenizer) -> list[int]:
        prefix_tokens = prompt[len(prompt) - forced:]
        # CTranslate2 returns the forced prefix as part of the sequence; be robust if not.
        if tokens[:forced] != prefix_tokens:
            tokens = prefix_tokens + tokens
        return [t for t in tokens if t < tokenizer.eot]

    def _window_frames(self, n_samples: int) -> int:
        hop: int = self.model.feature_extractor.hop_length
        for window_s in self.options.encoder_windows_s:
            if n_samples <= window_s * 16000:
                return int(window_s * 16000) // hop
        return 3000  # Whisper's own 30 s; longer audio is trimmed to it

    def _beam(self, final: bool, effort: str) -> int:
        opts = self.options
        if not final:
            return opts.partial_beam_size
        return opts.busy_final_beam_size if effort == "busy" else opts.final_beam_size

    def _candidate(self, result: Any, prompt: list[int], forced: int, tokenizer: Tokenizer,
                   temperature: float) -> tuple[list[int], float, float, float, float]:
        """A generate result as (tokens, avg log-prob, no-speech prob, ratio, temperature).

        Only the tokens after the `forced` prefix are judged: the prefix (an earlier final
        given as context) is not this decode's output, and judging it with the new words
        would make a longer context look more repetitive.
        """
        tokens = list(result.sequences_ids[0])
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        new = tokens[forced:] if tokens[:forced] == prompt[len(prompt) - forced:] else tokens
        ratio = compression_ratio(tokenizer.decode([t for t in new if t < tokenizer.eot]))
        return (tokens, float(avg_logprob), float(result.no_speech_prob), ratio, temperature)

    def _passes(self, candidate: tuple[list[int], float, float, float, float]) -> bool:
        """Silence, or neither a loop nor gibberish: no higher temperature is tried."""
        opts = self.options
        _, avg_logprob, no_speech_prob, ratio, _ = candidate
        return no_speech_prob > opts.no_speech_threshold or (
            ratio <= opts.compression_ratio_threshold and avg_logprob >= opts.log_prob_threshold
        )

    def _generate(self, encoder_output: Any, prompt: list[int], tokenizer: Tokenizer,
                  final: bool, forced: int,
                  effort: str = "full") -> tuple[list[int], float, float, float, float]:
        """Decode, retrying a final at higher temperatures while it looks like a loop."""
        opts = self.options
        temperatures = opts.final_temperatures if final else (0.0,)
        max_length = min(len(prompt) + opts.max_new_tokens, self.model.max_length)
        best: tuple[list[int], float, float, float, float] | None = None
        for temperature in temperatures:
            if temperature > 0:
                kwargs: dict[str, Any] = {
                    "beam_size": 1, "num_hypotheses": opts.best_of,
                    "sampling_topk": 0, "sampling_temperature": temperature,
                }
            else:
                kwargs = {"beam_size": self._beam(final, effort)}
            result = self.model.model.generate(
                encoder_output, [prompt], max_length=max_length, return_scores=True,
                return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1], **kwargs,
            )[0]
            candidate = self._candidate(result, prompt, forced, tokenizer, temperature)
            ratio, avg_logprob = candidate[3], candidate[1]
            if best is None or (ratio <= opts.compression_ratio_threshold < best[3]) or (
                ratio <= opts.compression_ratio_threshold and avg_logprob > best[1]
            ):
                best = candidate
            if self._passes(candidate):
                break
        assert best is not None
        return best

    def _align(self, tokenizer: Tokenizer, text_tokens: list[list[int]], encoder_output: Any,
               n_samples: list[int]) -> list[tuple[DecodedWord, ...]]:
        """Word timings for each item of the encoder output's batch (none for no tokens)."""
        hop = self.model.feature_extractor.hop_length
        # CTranslate2 takes one count of frames per batch item; faster-whisper passes it on
        frames: Any = [max(1, n // hop) for n in n_samples]
        alignments = self.model.find_alignment(tokenizer, text_tokens, encoder_output, frames)
        words = []
        for alignment, n in zip(alignments, n_samples, strict=True):
            merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
            limit = n / 16000
            words.append(tuple(
                DecodedWord(
                    word=w["word"],
                    start=float(min(w["start"], limit)),
                    end=float(min(w["end"], limit)),
                    probability=float(w["probability"]),
                )
                for w in alignment
                if w["word"].strip()
            ))
        return words
