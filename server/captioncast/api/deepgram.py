"""Deepgram's live API, `GET /v1/listen`, as a sans-I/O translator onto a session.

Query parameters become StreamParams (and the pause that ends an utterance); our
events become Deepgram's `Results`, `SpeechStarted`, `UtteranceEnd` and `Metadata`;
`KeepAlive`, `Finalize` and `CloseStream` become keepalive, flush and eos. A parameter
that would change the transcript in a way we cannot do is refused at the handshake
with HTTP 400 and Deepgram's error body (transport/compat_routes.py), never silently
ignored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from captioncast import __version__
from captioncast.api.g711 import ALAW, ULAW, g711_decoder
from captioncast.api.translator import Port
from captioncast.core.params import LANGUAGE_CODE, MAX_PROMPT_CHARS, StreamParams, bounded_int
from captioncast.errors import BadControlMessage, BadRequest
from captioncast.protocol import codes
from captioncast.protocol.events import (
    End,
    Error,
    Event,
    Final,
    Partial,
    Speakers,
    SpeechStarted,
    Word,
)

# Deepgram's close frames for a stream that failed (its "WebSocket DATA & NET errors").
DATA_ERROR = (codes.POLICY, "DATA-0000")  # the payload cannot be decoded as audio
NET_ERROR = (codes.INTERNAL, "NET-0001")  # no audio or message within the timeout
ENCODINGS: dict[str, Callable[[bytes], bytes] | None] = {
    "linear16": None, "mulaw": g711_decoder(ULAW), "alaw": g711_decoder(ALAW)}
# Accepted and without effect on the words: which Deepgram model, billing tags, and
# no_delay (smart formatting here never waits for more audio).
IGNORED = frozenset({"model", "version", "tag", "extra", "mip_opt_out", "token", "no_delay"})
REPEATABLE = frozenset({"keyterm", "keywords", "tag", "extra"})
# Features we do not have: refused when turned on (false is what we do anyway).
UNSUPPORTED = frozenset({"diarize_model", "redact", "search",
                         "replace", "callback", "callback_method", "detect_entities",
                         "dictation", "numerals", "language_hint"})
HONOURED = frozenset({"encoding", "sample_rate", "channels", "language", "interim_results",
                      "endpointing", "utterance_end_ms", "vad_events", "punctuate",
                      "smart_format", "keyterm", "keywords", "filler_words", "diarize",
                      "multichannel", "profanity_filter"})
# Whisper leaves out "um" and "uh" unless the text it continues has them: a prompt that
# does makes it write the fillers it hears (the best it can do; Deepgram's are promised).
FILLER_PROMPT = "Umm, let me think like, hmm... Okay, here's what I'm, like, thinking."
# A masked word (profanity_filter: `****`) is a word, as in Deepgram's transcripts.
_EDGE_PUNCTUATION = re.compile(r"^[^\w'*]+|[^\w'*]+$")
INTERIM_CONFIDENCE = 0.0  # a partial carries no word probabilities (interim_words)
_LABEL = re.compile(r"S([1-9][0-9]*)")


def speaker_number(label: str | None) -> int | None:
    """Our label as Deepgram's speaker: S1 is 0, S2 is 1 (Deepgram counts from 0)."""
    match = _LABEL.fullmatch(label or "")
    return None if match is None else int(match.group(1)) - 1


@dataclass(frozen=True)
class ListenOptions:
    """A `/v1/listen` query, translated."""

    stream: StreamParams
    decode: Callable[[bytes], bytes] | None = None  # G.711 to pcm_s16le
    punctuate: bool = False  # Deepgram's default: lower case, no punctuation
    vad_events: bool = False
    utterance_end_ms: int | None = None
    endpointing_ms: int | None = None  # None: the server's pause


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()  # the SDK sends Python's True and False
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def parse_listen_query(target: str) -> ListenOptions:
    """Validate a `/v1/listen` query; BadRequest says what Deepgram would have."""
    pairs = parse_qsl(urlsplit(target).query, keep_blank_values=True)
    query: dict[str, str] = {}
    terms: list[str] = []
    for key, value in pairs:
        if key in ("keyterm", "keywords"):
            terms.append(value.rsplit(":", 1)[0] if key == "keywords" else value)
        elif key in query and key not in REPEATABLE:
            raise BadRequest(f"query parameter {key} is given twice")
        else:
            query[key] = value
    unknown = sorted(set(query) - IGNORED - UNSUPPORTED - HONOURED)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    for name in sorted(UNSUPPORTED & set(query)):
        if query[name].lower() not in ("false", "0", ""):
            raise BadRequest(f"{name}={query[name]} is not supported by this server "
                             f"(captioncast does not do this feature): set {name}=false")
    if "encoding" not in query or "sample_rate" not in query:
        raise BadRequest("this server takes raw audio only: set encoding (linear16, mulaw or "
                         "alaw) and sample_rate; containerized audio is not supported")
    encoding = query["encoding"].lower()
    if encoding not in ENCODINGS:
        raise BadRequest(f"encoding={query['encoding']} is not supported: use linear16, "
                         "mulaw or alaw")
    stream: dict[str, Any] = {
        "sample_rate": bounded_int("sample_rate", query["sample_rate"], 8000, 48000),
        "channels": bounded_int("channels", query.get("channels", "1"), 1, 2),
        "interim": _flag("interim_results", query.get("interim_results", "false")),
    }
    language = query.get("language", "en").lower()
    if language == "multi":
        stream["language"] = "auto"
    else:
        primary = language.split("-", 1)[0]  # en-US: Whisper knows languages, not regions
        if not LANGUAGE_CODE.fullmatch(primary):
            raise BadRequest(f"language={query['language']} is not a language code")
        stream["language"] = primary
    prompt = ", ".join(t.strip() for t in terms if t.strip())
    if _flag("filler_words", query.get("filler_words", "false")):
        prompt = f"{FILLER_PROMPT} {prompt}".strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"keyterm and keywords together are limited to {MAX_PROMPT_CHARS} "
                         "characters")
    stream["prompt"] = prompt
    # Absent, diarize follows the server's default; said, it is what the client asked.
    if "diarize" in query:
        stream["diarize"] = _flag("diarize", query["diarize"])
    stream["multichannel"] = _flag("multichannel", query.get("multichannel", "false"))
    if stream["multichannel"] and stream["channels"] != 2:
        raise BadRequest("multichannel=true needs channels=2: each channel is one speaker "
                         "here; send mono audio with diarize=true instead")
    if "profanity_filter" in query:  # else the server's default, as on /v1/stream
        stream["profanity_filter"] = _flag("profanity_filter", query["profanity_filter"])
    vad_events = _flag("vad_events", query.get("vad_events", "false"))
    # SpeechStarted from our VAD, as soon as speech begins (before a word is decoded); a
    # multichannel stream has one VAD per channel and says it with its first interim.
    stream["speech_events"] = vad_events and not stream["multichannel"]
    endpointing = query.get("endpointing", "false")
    utterance_end = query.get("utterance_end_ms")
    return ListenOptions(
        stream=StreamParams(**stream),
        decode=ENCODINGS[encoding],
        punctuate=any(_flag(name, query.get(name, "false"))
                      for name in ("punctuate", "smart_format")),
        vad_events=vad_events,
        utterance_end_ms=None if utterance_end is None
        else bounded_int("utterance_end_ms", utterance_end, 1, 60000),
        endpointing_ms=None if endpointing.lower() == "false"
        else bounded_int("endpointing", endpointing, 0, 60000),
    )


def error_body(code: str, message: str, request_id: str) -> dict[str, str]:
    """A refused handshake's body as Deepgram's (sent with `dg-error` and `dg-request-id`)."""
    return {"err_code": code, "err_msg": message, "request_id": request_id}


def _plain(token: str) -> str:
    return _EDGE_PUNCTUATION.sub("", token).lower()


def interim_words(partial: Partial) -> tuple[Word, ...]:
    """A partial's words with approximate times, as Deepgram's interims carry words.

    A partial is a greedy decode without word timestamps (those cost a second pass, and
    only finals pay for it), so its words are spread over its audio, start to end, each
    by its length in characters. Their confidence is 0: the Partial event carries no
    probabilities, and 0 says "not measured" rather than inventing a score. The final
    that replaces the interim has the real timings and probabilities.
    """
    tokens = partial.text.split()
    if not tokens:
        return ()
    weights = [len(token) + 1 for token in tokens]  # +1: the gap after each word
    per_weight = max(partial.end - partial.start, 0.0) / sum(weights)
    words, at = [], partial.start
    for token, weight in zip(tokens, weights, strict=True):
        span = weight * per_weight
        words.append(Word(token, at, at + span - per_weight, INTERIM_CONFIDENCE))
        at += span
    return tuple(words)


class DeepgramTranslator:
    """One `/v1/listen` connection: Deepgram's messages in and out."""

    eager = False  # rendered as sent: a final waits for its commit to the store first

    def __init__(self, options: ListenOptions, model_name: str) -> None:
        self.options = options
        self.model_name = model_name
        self.request_id = str(uuid.uuid4())
        self.model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"captioncast:{model_name}"))
        self._sha = hashlib.sha256()
        self._heard: set[int] = set()  # utterances whose SpeechStarted went out
        self._finalizing = False  # a Finalize came: the next final says from_finalize
        self._failure: str | None = None  # the last error's code, for a failure's close
        # From the latest speakers table: a label later found to be another voice. A
        # Deepgram client knows no table, so later words say the voice's first number.
        self._same_as: dict[str, str] = {}

    # -- Deepgram's messages out ------------------------------------------------------

    def render(self, event: Event) -> list[str]:
        out: list[dict[str, Any]] = []
        if isinstance(event, SpeechStarted):
            if self.options.vad_events:
                self._heard.add(event.utterance)
                out.append(self._speech_started(event.at))
        elif isinstance(event, Partial | Final):
            # An utterance the VAD did not say begin (cut from the one before it without a
            # pause, or a multichannel stream's) says it with its first words.
            if self.options.vad_events and event.utterance not in self._heard:
                self._heard.add(event.utterance)
                out.append(self._speech_started(event.start, self._channel(event)))
            out.append(self._results(event))
            if (isinstance(event, Final) and event.text and
                    self.options.utterance_end_ms is not None):
                last = event.words[-1].end if event.words else event.end
                out.append({"type": "UtteranceEnd", "channel": self._channel(event),
                            "last_word_end": round(last, 3)})
        elif isinstance(event, Error):
            self._failure = event.code
            out.append({"type": "Error", "variant": event.code, "code": event.code,
                        "description": event.message, "message": event.message})
        elif isinstance(event, End):
            out.append(self._metadata(event))
        elif isinstance(event, Speakers):
            self._same_as = {e.id: e.same_as for e in event.speakers if e.same_as}
        return [json.dumps(message, ensure_ascii=False) for message in out]

    def _speech_started(self, at: float, channel: list[int] | None = None) -> dict[str, Any]:
        return {"type": "SpeechStarted", "channel": channel or [0, 1],
                "timestamp": round(at, 3)}

    def _results(self, event: Partial | Final) -> dict[str, Any]:
        final = isinstance(event, Final)
        from_finalize = final and self._finalizing
        if final:
            self._finalizing = False
        words = event.words if isinstance(event, Final) else interim_words(event)
        speaker = self._speaker(event.speaker)  # a partial's is a guess, and may be absent
        alternative = {
            "transcript": self._transcript(event.text),
            "confidence": round(sum(w.p for w in words) / len(words), 3) if words else 0.0,
            "words": [self._word(w, self._speaker(w.speaker) if w.speaker else speaker)
                      for w in words if _plain(w.word)],
        }
        if isinstance(event, Final) and event.language:
            alternative["languages"] = [event.language]
        return {
            "type": "Results", "channel_index": self._channel(event),
            "duration": round(event.end - event.start, 3), "start": round(event.start, 3),
            "is_final": final, "speech_final": final and not from_finalize,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [alternative]},
            "metadata": {"request_id": self.request_id, "model_uuid": self.model_uuid,
                         "model_info": self._model_info()},
        }

    def _transcript(self, text: str) -> str:
        if self.options.punctuate:
            return text.strip()
        return " ".join(filter(None, (_plain(token) for token in text.split())))

    def _channel(self, event: Partial | Final) -> list[int]:
        """Deepgram's `[channel, channels]`: with multichannel, the channel that spoke."""
        if (self.options.stream.multichannel and isinstance(event, Final) and
                event.source_channel is not None):
            return [event.source_channel, self.options.stream.channels]
        return [0, self.options.stream.channels if self.options.stream.multichannel else 1]

    def _speaker(self, label: str | None) -> int | None:
        seen: set[str] = set()
        while label in self._same_as and label not in seen:  # a chain of merges, no loop
            seen.add(label)
            label = self._same_as[label]
        return speaker_number(label)

    @staticmethod
    def _word(word: Word, speaker: int | None = None) -> dict[str, Any]:
        shown = word.word.strip()
        out: dict[str, Any] = {"word": _plain(shown), "start": round(word.start, 3),
                               "end": round(word.end, 3), "confidence": round(word.p, 3),
                               "punctuated_word": shown}
        if speaker is not None:
            # Deepgram's live words carry `speaker` alone: `speaker_confidence` is only
            # in its pre-recorded answers (the SDK's live word type has no such field).
            out["speaker"] = speaker
        return out

    def _model_info(self) -> dict[str, str]:
        return {"name": self.model_name, "version": __version__, "arch": "whisper"}

    def _metadata(self, end: End) -> dict[str, Any]:
        return {
            "type": "Metadata", "transaction_key": "deprecated",
            "request_id": self.request_id, "sha256": self._sha.hexdigest(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "duration": round(end.duration, 3), "channels": self.options.stream.channels,
            "models": [self.model_uuid], "model_info": {self.model_uuid: self._model_info()},
        }

    def close(self, code: int, reason: str) -> tuple[int, str]:
        if code == codes.POLICY and self._failure == "timeout":  # idle: nothing came
            return NET_ERROR
        if code != codes.NORMAL and self._failure == "bad_audio":
            return DATA_ERROR
        return code, reason

    # -- Deepgram's messages in -------------------------------------------------------

    def start(self, port: Port) -> None:
        pass

    def binary(self, frame: bytes, port: Port) -> None:
        if not frame:  # Deepgram's older close: an empty binary frame
            port.control("eos")
            return
        self._sha.update(frame)
        decode = self.options.decode
        port.audio(decode(frame) if decode is not None else frame)

    def text(self, text: str, port: Port) -> None:
        try:
            message = json.loads(text)
            kind = message.get("type") if isinstance(message, dict) else None
        except (json.JSONDecodeError, RecursionError):
            kind = None
        if kind == "KeepAlive":
            return
        if kind == "Finalize":
            self._finalizing = port.in_speech
            port.control("flush")
        elif kind == "CloseStream":
            port.control("eos")
        else:
            port.report(BadControlMessage(
                "text messages must be JSON with type KeepAlive, Finalize or CloseStream"))
