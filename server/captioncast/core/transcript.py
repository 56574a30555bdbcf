"""File transcription's parameters and answers: json, text, srt, vtt and the OpenAI shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from captioncast.core.params import StreamParams, parse_stream_params
from captioncast.errors import BadRequest
from captioncast.protocol.captions import Cue, render_srt, render_vtt
from captioncast.protocol.events import Final

Format = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json", "ndjson"]
FORMATS: tuple[Format, ...] = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json",
                               "ndjson")
CONTENT_TYPES: dict[Format, str] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "diarized_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "ndjson": "application/x-ndjson",
}
# Parameters shared with /v1/stream keep its validation; raw PCM needs `encoding`.
SHARED = ("sample_rate", "encoding", "channels", "language", "task", "prompt", "words",
          "diarize", "profanity_filter")
GRANULARITIES = ("segment", "word")


@dataclass(frozen=True)
class TranscribeParams:
    audio: StreamParams = field(default_factory=StreamParams)
    raw: bool = False  # the body is PCM as `audio` describes, not a file FFmpeg decodes
    format: Format = "json"
    words: bool = False  # word timings in the answer (json segments, verbose_json words)
    openai: bool = False  # answer in the OpenAI shapes (json is {"text"}; errors too)


# Plain text is `text` here and in OpenAI's API, `txt` as a file's extension (and on the
# channel transcript route): every route takes both.
ALIASES = {"txt": "text"}


def _format(value: str, allowed: Sequence[str]) -> Format:
    value = ALIASES.get(value, value)
    if value not in allowed:
        names = ", ".join("text (or txt)" if name == "text" else name for name in allowed)
        raise BadRequest(f"format must be one of {names}, got {value!r}")
    return value  # type: ignore[return-value]


def parse_transcribe_query(query: Mapping[str, str]) -> TranscribeParams:
    """Query parameters of `POST /v1/transcribe`."""
    unknown = sorted(set(query) - {*SHARED, "format"})
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    audio = parse_stream_params({k: v for k, v in query.items() if k in SHARED})
    raw = "encoding" in query or "sample_rate" in query
    if "channels" in query and not raw:
        raise BadRequest("channels applies to raw PCM: give encoding and sample_rate too")
    words = "words" in query and audio.words
    fmt = _format(query.get("format", "json"), ("json", "text", "srt", "vtt", "ndjson"))
    return TranscribeParams(audio=audio, raw=raw, format=fmt, words=words)


def parse_openai_form(fields: Mapping[str, list[str]]) -> TranscribeParams:
    """The fields of OpenAI's `POST /v1/audio/transcriptions` form, less the file.

    `model` is required by the OpenAI API and accepted here whatever it names: the
    server has one model, and a client never names a model on the server.
    """
    if not fields.get("model"):
        raise BadRequest("the form needs a model field (any name; the server has one model)")
    single: dict[str, str] = {}
    for name in ("language", "prompt", "response_format", "temperature"):
        values = fields.get(name, [])
        if len(values) > 1:
            raise BadRequest(f"form field {name} is given twice")
        if values:
            single[name] = values[0]
    granularities = fields.get("timestamp_granularities[]", []) + fields.get(
        "timestamp_granularities", [])
    for value in granularities:
        if value not in GRANULARITIES:
            raise BadRequest(f"timestamp_granularities must be segment or word, got {value!r}")
    fmt = _format(single.get("response_format", "json"),
                  ("json", "text", "srt", "vtt", "verbose_json", "diarized_json"))
    shared = {k: single[k] for k in ("language", "prompt") if single.get(k)}
    if fmt == "diarized_json":  # the format is the ask, as for gpt-4o-transcribe-diarize
        shared["diarize"] = "true"
    audio = parse_stream_params(shared)
    return TranscribeParams(audio=audio, format=fmt, words="word" in granularities,
                            openai=True)


def openai_speaker(label: str | None) -> str:
    """S1 as OpenAI's A, S2 as B, ..., S27 as AA: letters counted like spreadsheet columns."""
    number = int(label[1:]) if label and label[1:].isdigit() else 1
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


@dataclass(frozen=True)
class Segment:
    """A final, with the decoder's confidence for the OpenAI verbose shape."""

    final: Final
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    duration: float
    task: str = "transcribe"
    fixed_language: str | None = None

    @property
    def spoken(self) -> list[Segment]:
        return [s for s in self.segments if s.final.text]

    @property
    def text(self) -> str:
        return " ".join(s.final.text for s in self.spoken)

    @property
    def language(self) -> str:
        """The fixed language, else the one spoken longest; `en` for a file with no speech."""
        if self.fixed_language:
            return self.fixed_language
        spoken: dict[str, float] = {}
        for s in self.spoken:
            seconds = max(0.01, s.final.end - s.final.start)
            spoken[s.final.language] = spoken.get(s.final.language, 0.0) + seconds
        return max(spoken, key=lambda language: spoken[language]) if spoken else "en"

    def to_json(self, words: bool = False) -> dict[str, Any]:
        segments = []
        for i, s in enumerate(self.spoken):
            item: dict[str, Any] = {"id": i, "start": round(s.final.start, 3),
                                    "end": round(s.final.end, 3), "text": s.final.text,
                                    "language": s.final.language}
            if s.final.speaker is not None:
                item["speaker"] = s.final.speaker
            if words:
                item["words"] = [w.to_dict() for w in s.final.words]
            segments.append(item)
        return {"text": self.text, "language": self.language,
                "duration": round(self.duration, 3), "segments": segments}

    def to_openai_verbose(self, words: bool) -> dict[str, Any]:
        """OpenAI's verbose_json; `language` is the ISO 639-1 code."""
        out: dict[str, Any] = {
            "task": self.task, "language": self.language, "duration": round(self.duration, 3),
            "text": self.text,
            "segments": [
                {"id": i, "seek": 0, "start": round(s.final.start, 3),
                 "end": round(s.final.end, 3), "text": s.final.text, "tokens": [],
                 "temperature": 0.0, "avg_logprob": round(s.avg_logprob, 4),
                 "compression_ratio": round(s.compression_ratio, 4),
                 "no_speech_prob": round(s.no_speech_prob, 4)}
                for i, s in enumerate(self.spoken)
            ],
        }
        if words:
            out["words"] = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
                            for s in self.spoken for w in s.final.words]
        return out

    def to_openai_diarized(self) -> dict[str, Any]:
        """OpenAI's diarized_json (gpt-4o-transcribe-diarize): speakers A, B, ... in order
        of first appearance, as OpenAI names voices it was not told the names of."""
        return {
            "task": "transcribe", "duration": round(self.duration, 3), "text": self.text,
            "segments": [
                {"type": "transcript.text.segment", "id": f"seg_{i}",
                 "start": round(s.final.start, 3), "end": round(s.final.end, 3),
                 "text": s.final.text, "speaker": openai_speaker(s.final.speaker)}
                for i, s in enumerate(self.spoken)
            ],
            "usage": {"type": "duration", "seconds": round(self.duration, 3)},
        }

    def _cues(self) -> list[Cue]:
        # One cue a segment, its text as decoded: an answer mirrors the segments of its
        # JSON form, where a live caption file splits finals for reading.
        return [Cue(s.final.start, s.final.end, (s.final.text,)) for s in self.spoken]

    def to_srt(self) -> str:
        return render_srt(self._cues(), reindex=True)

    def to_vtt(self) -> str:
        return render_vtt(self._cues())

    def render(self, params: TranscribeParams) -> str | dict[str, Any]:
        """The answer in the asked format: a JSON object, or text."""
        if params.format == "json":
            return {"text": self.text} if params.openai else self.to_json(params.words)
        if params.format == "verbose_json":
            return self.to_openai_verbose(params.words)
        if params.format == "diarized_json":
            return self.to_openai_diarized()
        if params.format == "srt":
            return self.to_srt()
        if params.format == "vtt":
            return self.to_vtt()
        return self.text + "\n"
