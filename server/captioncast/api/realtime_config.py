"""OpenAI Realtime transcription: the session's settings (parsed, echoed back) and event ids.

Two shapes say the same settings: the current one (`session.update` with
`audio.input.format/transcription/turn_detection`) and the beta one
(`transcription_session.update` with `input_audio_format`,
`input_audio_transcription`). The session object echoed in `*.created` and
`*.updated` is what the server does, not only what was asked.
"""

from __future__ import annotations

import copy
import enum
import json
import secrets
from collections.abc import Callable
from typing import Any

from captioncast.core.params import LANGUAGE_CODE, MAX_PROMPT_CHARS, Configure, TurnSettings
from captioncast.errors import BadRequest

DEFAULT_VAD: dict[str, Any] = {"type": "server_vad", "threshold": 0.5,
                               "prefix_padding_ms": 300, "silence_duration_ms": 500}
DEFAULT_SEMANTIC: dict[str, Any] = {"type": "semantic_vad", "eagerness": "auto"}
TURN_DETECTION = ("server_vad", "semantic_vad")  # our VAD's pauses; our turn model's turns
# semantic_vad's eagerness as our turn settings: how sure the turn model must be at a
# pause, and OpenAI's documented longest wait (8 s, 4 s, 2 s) as the silence that ends a
# turn whatever the model says. `auto` is `medium`, as OpenAI documents.
EAGERNESS: dict[str, TurnSettings] = {
    "low": TurnSettings(eot_threshold=0.85, eot_timeout_ms=8000),
    "medium": TurnSettings(eot_threshold=0.7, eot_timeout_ms=4000),
    "high": TurnSettings(eot_threshold=0.5, eot_timeout_ms=2000),
}
EAGERNESS["auto"] = EAGERNESS["medium"]
GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
BETA_FORMATS = {beta: ga for ga, beta in GA_FORMATS.items()}


class RealtimeWire:
    """Server events, numbered; what both phases of a connection send."""

    def __init__(self) -> None:
        self._events = 0

    def event(self, kind: str, **fields: Any) -> str:
        self._events += 1
        return json.dumps({"type": kind, "event_id": f"event_{self._events:06d}", **fields},
                          ensure_ascii=False)

    def error(self, message: str, code: str | None, client_event: str | None = None,
              kind: str = "invalid_request_error") -> str:
        return self.event("error", error={"type": kind, "code": code, "message": message,
                                          "param": None, "event_id": client_event})


class SessionFlavour(enum.Enum):
    GA = "ga"  # session.created, session.update
    BETA = "beta"  # OpenAI-Beta: realtime=v1: transcription_session.*


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be an object")
    return value


class RealtimeConfig:
    def __init__(self, flavour: SessionFlavour, model: str) -> None:
        self.flavour = flavour
        self.id = "sess_" + secrets.token_hex(8)
        self.served_by = model  # the model that really transcribes
        self.model = "whisper-1"  # the transcription model the client named, echoed
        self.format = "audio/pcm"
        self.language: str | None = None
        self.prompt = ""
        self.turn_detection: dict[str, Any] | None = dict(DEFAULT_VAD)
        self.include: list[str] = []

    @property
    def server_vad(self) -> bool:
        """The server commits (either kind of turn detection), not the client."""
        return self.turn_detection is not None

    @property
    def semantic(self) -> bool:
        return self.turn_detection is not None and self.turn_detection["type"] == "semantic_vad"

    @property
    def turns(self) -> TurnSettings | None:
        """With semantic_vad, the session's turn settings by eagerness."""
        if self.turn_detection is None or not self.semantic:
            return None
        return EAGERNESS[self.turn_detection["eagerness"]]

    @property
    def silence_ms(self) -> int | None:
        """The pause that ends an utterance, when the client set one (server_vad's: with
        semantic_vad the turn model ends turns, and utterances end at the VAD's pause)."""
        if self.turn_detection is None or self.semantic:
            return None
        value = self.turn_detection.get("silence_duration_ms")
        return int(value) if isinstance(value, int | float) else None

    def update(self, session: Any,
               configure: Callable[[Configure], None] | None = None) -> None:
        """Apply an update whole or not at all. Once audio flows `configure` changes the
        running session's language, prompt and eagerness (and raises when it cannot); the
        input format and the kind of turn detection, which shaped the session, are fixed."""
        trial = copy.deepcopy(self)
        trial._apply(_object(session, "session"))
        if configure is not None:
            if trial._fixed() != self._fixed():
                raise BadRequest("the input format, the kind of turn detection and "
                                 "server_vad's silence_duration_ms cannot change once audio "
                                 "has been appended; open a new session")
            change = self._change(trial)
            if change != Configure():
                configure(change)
        self.__dict__.update(trial.__dict__)

    def _change(self, trial: RealtimeConfig) -> Configure:
        """What `trial` changes of the running session's settings."""
        language = None
        if trial.language != self.language:
            language = trial.language or "auto"
        prompt = trial.prompt[:MAX_PROMPT_CHARS] if trial.prompt != self.prompt else None
        turns: dict[str, object] = {}
        if trial.turns is not None and trial.turns != self.turns:
            turns = {"eot_threshold": trial.turns.eot_threshold,
                     "eot_timeout_ms": trial.turns.eot_timeout_ms}
        return Configure(prompt=prompt, language=language, turns=turns)

    def _apply(self, session: dict[str, Any]) -> None:
        if "input_audio_format" in session or "input_audio_transcription" in session:
            self._beta(session)
        else:
            if session.get("type", "transcription") != "transcription":
                raise BadRequest("this server runs transcription sessions only "
                                 "(session.type must be transcription)")
            audio = _object(_object(session.get("audio"), "session.audio").get("input"),
                            "session.audio.input")
            if "format" in audio:
                audio_format = _object(audio["format"], "format")
                self._format(audio_format.get("type", "audio/pcm"),
                             audio_format.get("rate", 24000))
            if "transcription" in audio:
                self._transcription(audio["transcription"])
            if "turn_detection" in audio:
                self._turn_detection(audio["turn_detection"])
        if "include" in session:
            self.include = [str(i) for i in session["include"] or []]

    def _beta(self, session: dict[str, Any]) -> None:
        if "input_audio_format" in session:
            name = session["input_audio_format"]
            if name not in BETA_FORMATS:
                raise BadRequest(f"input_audio_format must be pcm16, g711_ulaw or g711_alaw, "
                                 f"got {name!r}")
            self.format = BETA_FORMATS[name]
        if "input_audio_transcription" in session:
            self._transcription(session["input_audio_transcription"])
        if "turn_detection" in session:
            self._turn_detection(session["turn_detection"])

    def _format(self, kind: Any, rate: Any) -> None:
        if kind not in GA_FORMATS:
            raise BadRequest(f"format.type must be audio/pcm, audio/pcmu or audio/pcma, "
                             f"got {kind!r}")
        if kind == "audio/pcm" and rate != 24000:
            raise BadRequest(f"audio/pcm is 24000 Hz only, got rate {rate!r}")
        self.format = kind

    def _transcription(self, value: Any) -> None:
        value = _object(value, "transcription")
        if "model" in value:
            self.model = str(value["model"])
        if "language" in value:
            language = value["language"]
            self.language = str(language).lower().split("-", 1)[0] if language else None
            if self.language and not LANGUAGE_CODE.fullmatch(self.language):
                raise BadRequest(f"language {language!r} is not an ISO-639-1 code")
        if "prompt" in value:
            self.prompt = str(value["prompt"] or "").strip()

    def _turn_detection(self, value: Any) -> None:
        if value is None:
            self.turn_detection = None
            return
        value = _object(value, "turn_detection")
        kind = value.get("type", "server_vad")
        if kind not in TURN_DETECTION:
            raise BadRequest(f"turn_detection.type must be server_vad, semantic_vad or null, "
                             f"got {kind!r}")
        if kind == "semantic_vad":
            eagerness = value.get("eagerness") or "auto"
            if eagerness not in EAGERNESS:
                raise BadRequest(f"turn_detection.eagerness must be low, medium, high or "
                                 f"auto, got {eagerness!r}")
            self.turn_detection = {**DEFAULT_SEMANTIC, **value, "eagerness": eagerness}
        else:
            self.turn_detection = {**DEFAULT_VAD, **value, "type": kind}

    def _fixed(self) -> tuple[object, ...]:
        """What shaped the running session: its input, who commits, and the pause."""
        kind = None if self.turn_detection is None else self.turn_detection["type"]
        return (self.format, kind, self.silence_ms)

    # -- the session object ------------------------------------------------------------

    def _transcription_object(self) -> dict[str, Any]:
        return {"model": self.model, "language": self.language, "prompt": self.prompt}

    def as_ga(self) -> dict[str, Any]:
        rate = {"rate": 24000} if self.format == "audio/pcm" else {}
        return {
            "type": "transcription", "id": self.id, "object": "realtime.transcription_session",
            "expires_at": 0, "include": self.include,
            "audio": {"input": {
                "format": {"type": self.format, **rate},
                "transcription": self._transcription_object(),
                "turn_detection": self.turn_detection, "noise_reduction": None}},
        }

    def as_beta(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "realtime.transcription_session", "expires_at": 0,
            "modalities": ["text"], "input_audio_format": GA_FORMATS[self.format],
            "input_audio_transcription": self._transcription_object(),
            "turn_detection": self.turn_detection, "input_audio_noise_reduction": None,
            "include": self.include,
        }

    def created(self, wire: RealtimeWire) -> str:
        if self.flavour is SessionFlavour.BETA:
            return wire.event("transcription_session.created", session=self.as_beta())
        return wire.event("session.created", session=self.as_ga())

    def updated(self, wire: RealtimeWire, request: str) -> str:
        """`session.updated` or `transcription_session.updated`, as the update was named."""
        if request == "transcription_session.update":
            return wire.event("transcription_session.updated", session=self.as_beta())
        return wire.event("session.updated", session=self.as_ga())
