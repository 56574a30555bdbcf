"""Query parameters of `/v1/stream` and text control frames, validated into typed values."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from captioncast.errors import BadControlMessage, BadRequest

Encoding = Literal["pcm_s16le", "pcm_f32le"]
Task = Literal["transcribe", "translate"]
# end_turn: Deepgram Flux's ForceEndTurn (api/flux.py); /v1/stream's frames do not say it.
ControlType = Literal["flush", "eos", "keepalive", "end_turn"]

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
MAX_PROMPT_CHARS = 500
MAX_CONTROL_CHARS = 4096  # control messages are a few dozen bytes; more is not one
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KNOWN = frozenset(
    {
        "sample_rate", "encoding", "channels", "language", "task", "channel",
        "interim", "words", "prompt", "resume", "since", "token", "diarize", "multichannel",
        "profanity_filter", "turns", "eot_threshold", "eager_eot_threshold", "eot_timeout_ms",
    }
)


@dataclass(frozen=True)
class TurnSettings:
    """When a speaker's turn is over (Deepgram Flux's names, defaults and upper bounds): the
    turn model must be this sure at a pause, or the silence last this long."""

    eot_threshold: float = 0.7  # 1.0: never by the model (Flux's "bring your own" turns)
    eager_eot_threshold: float | None = None  # None: no eager end of turn
    eot_timeout_ms: int = 5000

    def changed(self, values: dict[str, object]) -> TurnSettings:
        """These settings with a client's new values (query or configure), checked."""
        out = self
        if "eot_threshold" in values:
            out = dataclasses.replace(
                out, eot_threshold=_number("eot_threshold", values["eot_threshold"], 0.3, 1.0))
        if "eager_eot_threshold" in values:
            out = dataclasses.replace(out, eager_eot_threshold=_number(
                "eager_eot_threshold", values["eager_eot_threshold"], 0.3, 0.9))
        if "eot_timeout_ms" in values:
            timeout = int(_number("eot_timeout_ms", values["eot_timeout_ms"], 500, 60000))
            out = dataclasses.replace(out, eot_timeout_ms=timeout)
        if out.eager_eot_threshold is not None and out.eager_eot_threshold > out.eot_threshold:
            raise BadRequest("eager_eot_threshold must not be above eot_threshold")
        return out

    @property
    def model_ends_turns(self) -> bool:
        """False at eot_threshold 1.0: only the timeout (or the client) ends a turn."""
        return self.eot_threshold < 1.0


def _number(name: str, value: object, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return number


@dataclass(frozen=True)
class StreamParams:
    sample_rate: int = 16000
    encoding: Encoding = "pcm_s16le"
    channels: int = 1
    language: str | None = None  # None: the server's default
    task: Task = "transcribe"
    channel: str | None = None
    interim: bool = True
    words: bool = True
    prompt: str = ""
    resume: str | None = None
    since: int = 0
    diarize: bool | None = None  # None: the server's default
    multichannel: bool = False  # two channels, each its own speaker, transcribed apart
    profanity_filter: bool | None = None  # None: the server's default (text/profanity.py)
    turns: TurnSettings | None = None  # None: no speech_started or turn events
    # speech_started from the VAD without turns: a compatible API whose own endpointing
    # ends utterances still says at once that speech began (not with the first partial).
    speech_events: bool = False

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample across all channels: frames must be whole multiples."""
        return (2 if self.encoding == "pcm_s16le" else 4) * self.channels


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def bounded_int(name: str, value: str, low: int, high: int) -> int:
    """A query parameter's integer in [low, high], or BadRequest saying what was wrong."""
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {number}")
    return number


def parse_stream_params(query: Mapping[str, str]) -> StreamParams:
    """Validate `/v1/stream` query parameters; raise BadRequest with a readable message."""
    unknown = sorted(set(query) - KNOWN)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    kwargs: dict[str, object] = {}
    if "sample_rate" in query:
        kwargs["sample_rate"] = bounded_int(
            "sample_rate", query["sample_rate"], MIN_SAMPLE_RATE, MAX_SAMPLE_RATE
        )
    if "encoding" in query:
        if query["encoding"] not in ("pcm_s16le", "pcm_f32le"):
            raise BadRequest(
                f"encoding must be pcm_s16le or pcm_f32le, got {query['encoding']!r}"
            )
        kwargs["encoding"] = query["encoding"]
    if "channels" in query:
        kwargs["channels"] = bounded_int("channels", query["channels"], 1, 2)
    if "language" in query:
        language = query["language"].lower()
        if language != "auto" and not LANGUAGE_CODE.fullmatch(language):
            raise BadRequest(f"language must be an ISO 639-1 code or auto, got {language!r}")
        kwargs["language"] = language
    if "task" in query:
        if query["task"] not in ("transcribe", "translate"):
            raise BadRequest(f"task must be transcribe or translate, got {query['task']!r}")
        kwargs["task"] = query["task"]
    if "channel" in query:
        kwargs["channel"] = parse_channel_name(query["channel"])
    for flag in ("interim", "words"):
        if flag in query:
            kwargs[flag] = _bool(flag, query[flag])
    if "prompt" in query:
        if len(query["prompt"]) > MAX_PROMPT_CHARS:
            raise BadRequest(f"prompt is limited to {MAX_PROMPT_CHARS} characters")
        kwargs["prompt"] = query["prompt"].strip()
    if "resume" in query:
        if not SESSION_ID.fullmatch(query["resume"]):
            raise BadRequest("resume must be a session id from an earlier ready event")
        kwargs["resume"] = query["resume"]
    if "since" in query:
        kwargs["since"] = bounded_int("since", query["since"], 0, 2**53)
    for flag in ("diarize", "multichannel", "profanity_filter"):
        if flag in query:
            kwargs[flag] = _bool(flag, query[flag])
    if kwargs.get("multichannel") and kwargs.get("channels", 1) != 2:
        raise BadRequest("multichannel=true needs channels=2: each channel is one speaker; "
                         "send mono audio with diarize=true instead")
    turn_values = {k: query[k] for k in ("eot_threshold", "eager_eot_threshold",
                                         "eot_timeout_ms") if k in query}
    if ("turns" in query and _bool("turns", query["turns"])) or turn_values:
        kwargs["turns"] = TurnSettings().changed(dict(turn_values))
    return StreamParams(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ViewerParams:
    channel: str
    since: int | None = None  # None: live from now on (plus the partial in progress)


def parse_channel_name(value: str) -> str:
    if not CHANNEL_NAME.fullmatch(value):
        raise BadRequest("channel must match [A-Za-z0-9_.-]{1,64}")
    return value


def parse_viewer_params(query: Mapping[str, str], route: str = "/v1/captions") -> ViewerParams:
    """Validate `/v1/captions` (and `/overlay`) query parameters; `route` is the example
    a missing channel's message gives."""
    unknown = sorted(set(query) - {"channel", "since", "token"})
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    if "channel" not in query:
        raise BadRequest(f"channel is required, for example {route}?channel=show")
    since = bounded_int("since", query["since"], 0, 2**53) if "since" in query else None
    return ViewerParams(parse_channel_name(query["channel"]), since)


SPEAKER_LABEL = re.compile(r"S[1-9][0-9]{0,3}")
MAX_SPEAKER_NAME = 64


@dataclass(frozen=True)
class NameSpeaker:
    """`{"type":"speaker","id":"S1","name":"Alice"}`: the speaking client names a voice."""

    id: str
    name: str


def parse_speaker_name(label: object, name: object) -> NameSpeaker:
    """A label and the name it is given, checked; BadControlMessage says what is wrong."""
    if not isinstance(label, str) or not SPEAKER_LABEL.fullmatch(label):
        raise BadControlMessage('a speaker id is a label such as "S1" from a final')
    return NameSpeaker(label, parse_voice_name(name))


def parse_voice_name(name: object) -> str:
    """A speaker's name (a label's, an enrolled voice's), checked and made one line."""
    if not isinstance(name, str) or not name.strip():
        raise BadControlMessage("a speaker name is a non-empty string")
    cleaned = " ".join(name.split())  # a name is one line: no newlines into caption files
    if len(cleaned) > MAX_SPEAKER_NAME:
        raise BadControlMessage(f"a speaker name is at most {MAX_SPEAKER_NAME} characters")
    return cleaned


@dataclass(frozen=True)
class Configure:
    """`{"type":"configure",...}`: settings changed mid-stream, from the next decode on."""

    prompt: str | None = None  # the prompt, keyterms first
    language: str | None = None  # a code, or "auto"
    interim: bool | None = None
    turns: dict[str, object] = dataclasses.field(default_factory=dict)


CONFIGURABLE = ("prompt", "keyterms", "language", "interim", "eot_threshold",
                "eager_eot_threshold", "eot_timeout_ms")


def parse_configure(message: dict[str, object]) -> Configure:
    """A configure message's settings, checked; BadControlMessage says what is wrong."""
    unknown = sorted(set(message) - {"type", *CONFIGURABLE})
    if unknown:
        raise BadControlMessage(f"configure cannot change {', '.join(unknown)[:80]}; it "
                                f"changes {', '.join(CONFIGURABLE)}")
    prompt = message.get("prompt")
    keyterms = message.get("keyterms")
    if prompt is not None and not isinstance(prompt, str):
        raise BadControlMessage("prompt is a string")
    if keyterms is not None and (not isinstance(keyterms, list)
                                 or not all(isinstance(k, str) for k in keyterms)):
        raise BadControlMessage("keyterms is a list of strings")
    text = None
    if prompt is not None or keyterms is not None:
        text = " ".join([", ".join(k.strip() for k in keyterms or []), prompt or ""]).strip()
        if len(text) > MAX_PROMPT_CHARS:
            raise BadControlMessage(f"prompt and keyterms are limited to {MAX_PROMPT_CHARS} "
                                    "characters")
    language = message.get("language")
    if language is not None and (not isinstance(language, str) or (
            language != "auto" and not LANGUAGE_CODE.fullmatch(language))):
        raise BadControlMessage("language is an ISO 639-1 code or auto")
    interim = message.get("interim")
    if interim is not None and not isinstance(interim, bool):
        raise BadControlMessage("interim is true or false")
    turns = {k: message[k] for k in CONFIGURABLE[4:] if k in message}
    try:
        TurnSettings().changed(turns)
    except BadRequest as error:
        raise BadControlMessage(error.message) from None
    return Configure(text, language, interim, turns)


def parse_message(text: str) -> ControlType | NameSpeaker | Configure:
    """A client text frame: a control, the naming of a speaker, or new settings."""
    message = _json_object(text)
    if message.get("type") == "speaker":
        return parse_speaker_name(message.get("id"), message.get("name"))
    if message.get("type") == "configure":
        return parse_configure(message)
    return _control_type(message)


def parse_control(text: str) -> ControlType:
    """Parse a client text frame; raise BadControlMessage (non-fatal) when it is not one."""
    return _control_type(_json_object(text))


def _json_object(text: str) -> dict[str, object]:
    if len(text) > MAX_CONTROL_CHARS:
        raise BadControlMessage(
            f"text frame of {len(text)} characters is not a control message "
            f"(at most {MAX_CONTROL_CHARS}); audio goes in binary frames")
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise BadControlMessage(
            'text frames must be JSON objects such as {"type":"eos"}'
        ) from None
    if not isinstance(message, dict):
        raise BadControlMessage("text frames must be JSON objects with a type")
    return message


def _control_type(message: dict[str, object]) -> ControlType:
    kind = message.get("type")
    if kind not in ("flush", "eos", "keepalive"):
        shown = repr(kind)
        if len(shown) > 40:  # never echo a client's megabytes back at it
            shown = shown[:37] + "..."
        raise BadControlMessage(
            f"unknown message type {shown}: expected flush, eos, keepalive, speaker or configure"
        )
    return kind
