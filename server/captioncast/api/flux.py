"""Deepgram Flux, `GET /v2/listen`: turn-taking for voice agents, as a sans-I/O translator.

The query becomes StreamParams with `turns` (Flux's thresholds, checked against Flux's
ranges); our `turn` events become Flux's `TurnInfo` (StartOfTurn, Update,
EagerEndOfTurn, TurnResumed, EndOfTurn), numbered by `sequence_id` with the
translator's own `Connected`, `ConfigureSuccess`/`ConfigureFailure` and `Warning`.
Partials and finals are not said apart: Flux carries a turn's words in its updates.
`Configure` changes thresholds, keyterms and language hints mid-stream; `ForceEndTurn`
ends the turn; `CloseStream` is eos. A parameter we cannot honour is refused at the
handshake with HTTP 400 and `dg-error` (transport/compat_routes.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from captioncast.api.deepgram import DATA_ERROR, ENCODINGS, NET_ERROR
from captioncast.api.translator import Port
from captioncast.core.params import (
    LANGUAGE_CODE,
    MAX_PROMPT_CHARS,
    Configure,
    StreamParams,
    TurnSettings,
    bounded_int,
)
from captioncast.errors import BadControlMessage, BadRequest, CaptioncastError
from captioncast.protocol import codes
from captioncast.protocol.codes import ErrorCode
from captioncast.protocol.events import Error, Event, Turn, Word

MODELS = ("flux-general-en", "flux-general-multi")
MULTI = "flux-general-multi"
# Flux's documented ranges (developers.deepgram.com/docs/flux/configuration): wider
# than what TurnSettings takes at the top, narrower for eot_threshold at the bottom.
RANGES: dict[str, tuple[float, float]] = {
    "eot_threshold": (0.5, 1.0), "eager_eot_threshold": (0.3, 0.9),
    "eot_timeout_ms": (500, 60000)}
# Accepted and without effect: billing tags, the improvement programme, our token, and
# numerals (Whisper writes numbers its own way, mostly as digits, as numerals=true does).
IGNORED = frozenset({"tag", "mip_opt_out", "token", "numerals"})
HONOURED = frozenset({"model", "encoding", "sample_rate", "keyterm", "language_hint",
                      "profanity_filter", *RANGES})
UNSUPPORTED = frozenset({"redact"})  # refused unless false
REPEATABLE = frozenset({"keyterm", "tag", "language_hint"})
EVENTS = {"start": "StartOfTurn", "update": "Update", "eager_end": "EagerEndOfTurn",
          "resumed": "TurnResumed", "end": "EndOfTurn"}
# An error event with one of these codes ends the stream: Flux's `Error`. The others
# (a bad control message, bad audio) go on, said as its `Warning`.
FATAL = frozenset({ErrorCode.UNAUTHORIZED, ErrorCode.OVERLOADED, ErrorCode.TOO_LARGE,
                   ErrorCode.TIMEOUT, ErrorCode.INTERNAL})


@dataclass(frozen=True)
class FluxOptions:
    """A `/v2/listen` query, translated."""

    stream: StreamParams  # its `turns` is always set
    model: str = "flux-general-en"
    decode: Callable[[bytes], bytes] | None = None  # G.711 to pcm_s16le
    keyterms: tuple[str, ...] = ()

    @property
    def turns(self) -> TurnSettings:
        assert self.stream.turns is not None
        return self.stream.turns


def flux_thresholds(settings: TurnSettings, values: Mapping[str, object]) -> TurnSettings:
    """`settings` with a client's thresholds, each in Flux's range; BadRequest if not."""
    for name, value in values.items():
        low, high = RANGES[name]
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise BadRequest(f"{name} must be a number, got {str(value)[:40]!r}") from None
        if not low <= number <= high:
            raise BadRequest(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return settings.changed(dict(values))


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()  # the SDK sends Python's True and False
    if lowered in ("true", "false", "1", "0"):
        return lowered in ("true", "1")
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def _hinted_language(model: str, hints: list[str]) -> str:
    """The language a model and its hints ask for: English, one hinted, or detected."""
    if model != MULTI:
        if hints:
            raise BadRequest(f"language_hint is only valid with model={MULTI}")
        return "en"
    codes_ = {hint.lower().split("-", 1)[0] for hint in hints}
    for code in codes_:
        if not LANGUAGE_CODE.fullmatch(code):
            raise BadRequest(f"language_hint={code} is not a language code")
    # Whisper takes one language or detects it: two hints leave it to detection.
    return codes_.pop() if len(codes_) == 1 else "auto"


def _keyterm_prompt(keyterms: list[str] | tuple[str, ...]) -> str:
    prompt = ", ".join(t.strip() for t in keyterms if t.strip())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"keyterms together are limited to {MAX_PROMPT_CHARS} characters")
    return prompt


def parse_flux_query(target: str) -> FluxOptions:
    """Validate a `/v2/listen` query; BadRequest says what Flux would have."""
    query: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in REPEATABLE}
    for key, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        if key in REPEATABLE:
            repeated[key].append(value)
        elif key in query:
            raise BadRequest(f"query parameter {key} is given twice")
        else:
            query[key] = value
    unknown = sorted(set(query) - IGNORED - UNSUPPORTED - HONOURED)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    for name in sorted(UNSUPPORTED & set(query)):
        if query[name].lower() not in ("false", "0", ""):
            raise BadRequest(f"{name}={query[name]} is not supported by this server")
    model = query.get("model", MODELS[0])
    if model not in MODELS:
        raise BadRequest(f"model={model} is not a Flux model: /v2/listen serves "
                         f"{' and '.join(MODELS)} (other models are on /v1/listen)")
    if "encoding" not in query or "sample_rate" not in query:
        raise BadRequest("this server takes raw audio only: set encoding (linear16, mulaw or "
                         "alaw) and sample_rate; containerized audio is not supported")
    encoding = query["encoding"].lower()
    if encoding not in ENCODINGS:
        raise BadRequest(f"encoding={query['encoding']} is not supported: use linear16, "
                         "mulaw or alaw")
    turns = flux_thresholds(TurnSettings(), {k: query[k] for k in RANGES if k in query})
    keyterms = tuple(repeated["keyterm"])
    stream = StreamParams(
        sample_rate=bounded_int("sample_rate", query["sample_rate"], 8000, 48000),
        language=_hinted_language(model, repeated["language_hint"]),
        interim=True,  # a turn's updates are its partials
        prompt=_keyterm_prompt(keyterms),
        # A voice agent waits on every final: none is held to be labelled with a voice.
        diarize=False,
        profanity_filter=(_flag("profanity_filter", query["profanity_filter"])
                          if "profanity_filter" in query else None),
        turns=turns,
    )
    return FluxOptions(stream, model, ENCODINGS[encoding], keyterms)


class FluxTranslator:
    """One `/v2/listen` connection: Flux's messages in and out."""

    # Rendered when the session says them, so that `sequence_id` counts the messages in
    # the order they go out, this translator's own among them (a final still waits for
    # its commit: the connection holds the first message of an event until then).
    eager = True

    def __init__(self, options: FluxOptions) -> None:
        self.options = options
        self.request_id = str(uuid.uuid4())
        self.settings = options.turns  # as the client last set them
        self.keyterms: tuple[str, ...] = options.keyterms
        self.hints: list[str] = []
        self._sequence = itertools.count()
        self._failure: str | None = None  # the last error's code, for a failure's close
        self._forced: set[int] = set()  # turns the client ended (ForceEndTurn)
        self._turn: int | None = None  # the turn under way
        self._eager: str | None = None  # the EagerEndOfTurn's transcript, until resolved

    def _message(self, kind: str, **fields: Any) -> str:
        message = {"type": kind, "request_id": self.request_id,
                   "sequence_id": next(self._sequence), **fields}
        return json.dumps(message, ensure_ascii=False)

    # -- Flux's messages out ------------------------------------------------------------

    def render(self, event: Event) -> list[str]:
        if isinstance(event, Turn):
            return self._turn_info(event)
        if isinstance(event, Error):
            self._failure = event.code
            kind = "Error" if event.code in FATAL else "Warning"
            return [self._message(kind, code=str(event.code).upper(),
                                  description=event.message)]
        return []  # partials, finals, speech_started, end: Flux says turns only

    def _turn_info(self, turn: Turn) -> list[str]:
        out: list[str] = []
        if turn.event == "start":
            self._turn, self._eager = turn.turn, None
        elif turn.event == "eager_end":
            if not turn.transcript:
                return []  # Flux's eager end always has words; nothing to answer yet
            self._eager = turn.transcript
        elif turn.event == "resumed":
            if self._eager is None:
                return []  # its eager end was not said
            self._eager = None
        elif self._eager is not None and self._eager != turn.transcript:
            # Flux's promise: after an eager end the words stay the eager end's until a
            # resume, so an agent drops the reply it began on them (a final that differs
            # from the partial the eager end said, or more speech).
            out.append(self._info("TurnResumed", turn))
            self._eager = None
        if turn.event == "end":
            self._turn, self._eager = None, None
        out.append(self._info(EVENTS[turn.event], turn))
        return out

    def _info(self, kind: str, turn: Turn) -> str:
        fields: dict[str, Any] = {
            "event": kind, "turn_index": turn.turn,
            "audio_window_start": round(turn.start, 3), "audio_window_end": round(turn.end, 3),
            "transcript": turn.transcript.strip(),
            "words": [self._word(w) for w in turn.words if w.word.strip()],
            "end_of_turn_confidence": round(turn.confidence, 3)}
        if kind == "EndOfTurn":
            fields["trigger"] = self._trigger(turn)
        return self._message("TurnInfo", **fields)

    def _trigger(self, turn: Turn) -> str:
        """Why the turn ended: the client's ForceEndTurn, the model, or the silence."""
        if turn.turn in self._forced:
            self._forced.discard(turn.turn)
            return "manual"
        settings = self.settings
        if settings.model_ends_turns and turn.confidence >= settings.eot_threshold:
            return "model"
        return "timeout"

    @staticmethod
    def _word(word: Word) -> dict[str, Any]:
        return {"word": word.word.strip(), "confidence": round(word.p, 3),
                "start": round(word.start, 3), "end": round(word.end, 3)}

    def close(self, code: int, reason: str) -> tuple[int, str]:
        if code == codes.POLICY and self._failure == ErrorCode.TIMEOUT:
            return NET_ERROR
        if code != codes.NORMAL and self._failure == ErrorCode.BAD_AUDIO:
            return DATA_ERROR
        return code, reason

    # -- Flux's messages in -------------------------------------------------------------

    def start(self, port: Port) -> None:
        port.say(self._message("Connected"))

    def binary(self, frame: bytes, port: Port) -> None:
        if frame:
            decode = self.options.decode
            port.audio(decode(frame) if decode is not None else frame)

    def text(self, text: str, port: Port) -> None:
        try:
            message = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "CloseStream":
            port.control("eos")
        elif kind == "ForceEndTurn":
            if self._turn is not None:
                self._forced.add(self._turn)
            port.control("end_turn")
        elif kind == "Configure" and isinstance(message, dict):
            port.say(self._configure(message, port))
        elif kind != "KeepAlive":  # a keepalive only keeps the stream from idling out
            port.report(BadControlMessage(
                "text messages must be JSON with type Configure, ForceEndTurn, KeepAlive "
                "or CloseStream"))

    def _configure(self, message: dict[str, Any], port: Port) -> str:
        """Apply a Configure: its ConfigureSuccess with what is now set, or the failure."""
        given = {k: v for k, v in message.items() if v is not None and k != "type"}
        try:
            change, settings, keyterms, hints = self._change(given)
            port.configure(change)
        except CaptioncastError as error:
            return self._message("ConfigureFailure", code="INVALID_CONFIGURATION",
                                 description=error.message)
        self.settings, self.keyterms, self.hints = settings, keyterms, hints
        thresholds = {"eot_threshold": settings.eot_threshold,
                      "eot_timeout_ms": settings.eot_timeout_ms}
        if settings.eager_eot_threshold is not None:
            thresholds["eager_eot_threshold"] = settings.eager_eot_threshold
        fields: dict[str, Any] = {"thresholds": thresholds, "keyterms": list(keyterms)}
        if self.options.model == MULTI:
            fields["language_hints"] = hints
        return self._message("ConfigureSuccess", **fields)

    def _change(self, given: dict[str, Any]) -> tuple[
            Configure, TurnSettings, tuple[str, ...], list[str]]:
        unknown = sorted(set(given) - {"thresholds", "keyterms", "language_hints", "numerals"})
        if unknown:
            raise BadControlMessage(f"Configure cannot change {', '.join(unknown)[:80]}; it "
                                    "changes thresholds, keyterms and language_hints")
        thresholds = given.get("thresholds", {})
        if not isinstance(thresholds, dict) or set(thresholds) - set(RANGES):
            raise BadControlMessage(f"thresholds holds {', '.join(RANGES)}")
        thresholds = {k: v for k, v in thresholds.items() if v is not None}
        try:
            settings = flux_thresholds(self.settings, thresholds)
            change = Configure(turns=dict(thresholds))
            keyterms, hints = self.keyterms, self.hints
            if "keyterms" in given:
                terms = given["keyterms"]
                terms = [terms] if isinstance(terms, str) else terms
                if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                    raise BadRequest("keyterms is a string or a list of strings")
                keyterms = tuple(terms)
                change = dataclasses.replace(change, prompt=_keyterm_prompt(keyterms))
            if "language_hints" in given:
                hints = given["language_hints"]
                if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
                    raise BadRequest("language_hints is a list of language codes")
                change = dataclasses.replace(
                    change, language=_hinted_language(self.options.model, hints))
        except BadRequest as error:
            raise BadControlMessage(error.message) from None
        return change, settings, keyterms, list(hints)
