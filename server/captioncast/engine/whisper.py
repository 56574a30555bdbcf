"""faster-whisper behind the Decoder interface: one utterance, one window, forced prefix."""

from __future__ import annotations

import logging
import os
import threading
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
        model = self.model
        audio = request.audio.astype(np.float32, copy=False)
        num_frames = len(audio) // model.feature_extractor.hop_length
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

        previous = tokenizer.encode(" " + request.prompt) if request.prompt else []
        prompt = model.get_prompt(
            tokenizer, previous, without_timestamps=True, prefix=request.prefix or None
        )
        prefix_tokens = prompt[prompt.index(tokenizer.no_timestamps) + 1 :]
        final = request.kind == "final"
        tokens, avg_logprob, no_speech_prob, ratio, temperature = self._generate(
            encoder_output, prompt, tokenizer, final, len(prefix_tokens), request.effort
        )
        # CTranslate2 returns the forced prefix as part of the sequence; be robust if not.
        if tokens[: len(prefix_tokens)] != prefix_tokens:
            tokens = prefix_tokens + tokens
        text_tokens = [t for t in tokens if t < tokenizer.eot]
        text = tokenizer.decode(text_tokens).strip()
        words: tuple[DecodedWord, ...] = ()
        if request.word_timestamps and text_tokens:
            words = self._align(tokenizer, text_tokens, encoder_output, num_frames, len(audio))
        return DecodeResult(
            text=text,
            language=language,
            words=words,
            avg_logprob=avg_logprob,
            no_speech_prob=no_speech_prob,
            compression_ratio=ratio,
            language_probability=float(language_probability),
            temperature=temperature,
        )

    def _window_frames(self, n_samples: int) -> int:
        hop: int = self.model.feature_extractor.hop_length
        for window_s in self.options.encoder_windows_s:
            if n_samples <= window_s * 16000:
                return int(window_s * 16000) // hop
        return 3000  # Whisper's own 30 s; longer audio is trimmed to it

    def _generate(self, encoder_output: Any, prompt: list[int], tokenizer: Tokenizer,
                  final: bool, forced: int,
                  effort: str = "full") -> tuple[list[int], float, float, float, float]:
        """Decode, retrying a final at higher temperatures while it looks like a loop.

        Only the tokens after the `forced` prefix are judged: the prefix (an earlier final
        given as context) is not this decode's output, and judging it with the new words
        would make a longer context look more repetitive.
        """
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
                beam = opts.partial_beam_size
                if final:
                    beam = opts.busy_final_beam_size if effort == "busy" else opts.final_beam_size
                kwargs = {"beam_size": beam}
            result = self.model.model.generate(
                encoder_output, [prompt], max_length=max_length, return_scores=True,
                return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1], **kwargs,
            )[0]
            tokens = list(result.sequences_ids[0])
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            new = tokens[forced:] if tokens[:forced] == prompt[len(prompt) - forced:] else tokens
            ratio = compression_ratio(tokenizer.decode([t for t in new if t < tokenizer.eot]))
            candidate = (tokens, float(avg_logprob), float(result.no_speech_prob), ratio,
                         temperature)
            if best is None or (ratio <= opts.compression_ratio_threshold < best[3]) or (
                ratio <= opts.compression_ratio_threshold and avg_logprob > best[1]
            ):
                best = candidate
            silent = result.no_speech_prob > opts.no_speech_threshold
            if silent or (
                ratio <= opts.compression_ratio_threshold and avg_logprob >= opts.log_prob_threshold
            ):
                break
        assert best is not None
        return best

    def _align(self, tokenizer: Tokenizer, text_tokens: list[int], encoder_output: Any,
               num_frames: int, n_samples: int) -> tuple[DecodedWord, ...]:
        alignment = self.model.find_alignment(
            tokenizer, [text_tokens], encoder_output, max(1, num_frames)
        )[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        limit = n_samples / 16000
        return tuple(
            DecodedWord(
                word=w["word"],
                start=float(min(w["start"], limit)),
                end=float(min(w["end"], limit)),
                probability=float(w["probability"]),
            )
            for w in alignment
            if w["word"].strip()
        )
