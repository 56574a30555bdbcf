"""The Hugging Face Inference API for speech, sans-I/O: its request forms in, its answer out.

The body is the audio file itself, or JSON `{"inputs": BASE64, "parameters": {...}}`
(what `huggingface_hub` sends when there are parameters); the answer is
`{"text": ...}`, with `chunks` when `return_timestamps` asks (true: one per
utterance, "word": one per word). The route is transport/huggingface.py's.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from captioncast.core.params import LANGUAGE_CODE, StreamParams
from captioncast.core.transcript import TranscribeParams, Transcript
from captioncast.errors import BadRequest

PARAMETERS = frozenset({"return_timestamps", "generate_kwargs"})
GENERATE_KWARGS = frozenset({"language", "task"})


def error_body(message: str) -> dict[str, str]:
    return {"error": message}


def parse_json_body(data: bytes) -> tuple[TranscribeParams, str | None, bytes]:
    """A JSON body: its parameters, the chunks asked for, and the audio it carries."""
    try:
        payload = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the body is not JSON: send the audio bytes, or "
                         '{"inputs": BASE64_AUDIO, "parameters": {...}}') from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str):
        raise BadRequest('the JSON body needs "inputs": the audio, base64-encoded')
    params, chunks = parse_parameters(payload.get("parameters"))
    try:
        audio = base64.b64decode(payload["inputs"], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("inputs must be base64-encoded audio (a URL is not fetched)") \
            from None
    if not audio:
        raise BadRequest("inputs is empty: send the audio, base64-encoded")
    return params, chunks, audio


def parse_parameters(parameters: Any) -> tuple[TranscribeParams, str | None]:
    """HF's `parameters` as our TranscribeParams and the chunks asked for (None, segment,
    word); BadRequest for a parameter this server does not honour."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise BadRequest("parameters must be an object")
    unknown = sorted(set(parameters) - PARAMETERS)
    if unknown:
        raise BadRequest(f"parameter(s) not supported by this server: {', '.join(unknown)}")
    stamps = parameters.get("return_timestamps")
    if stamps not in (None, False, True, "word"):
        raise BadRequest("return_timestamps must be true, false or \"word\"")
    generate = parameters.get("generate_kwargs") or {}
    if not isinstance(generate, dict) or set(generate) - GENERATE_KWARGS:
        raise BadRequest("generate_kwargs may hold language and task only")
    audio: dict[str, Any] = {}
    if "language" in generate:
        language = str(generate["language"]).lower()
        if not LANGUAGE_CODE.fullmatch(language):
            raise BadRequest(f"language must be an ISO 639-1 code, got {language!r}")
        audio["language"] = language
    if "task" in generate:
        if generate["task"] not in ("transcribe", "translate"):
            raise BadRequest("task must be transcribe or translate")
        audio["task"] = generate["task"]
    chunks = "word" if stamps == "word" else ("segment" if stamps else None)
    return TranscribeParams(audio=StreamParams(**audio), words=chunks == "word"), chunks


def render(transcript: Transcript, chunks: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": transcript.text}
    if chunks == "segment":
        body["chunks"] = [{"text": s.final.text, "timestamp": [round(s.final.start, 3),
                                                               round(s.final.end, 3)]}
                          for s in transcript.spoken]
    elif chunks == "word":
        body["chunks"] = [{"text": w.word.strip(), "timestamp": [round(w.start, 3),
                                                                 round(w.end, 3)]}
                          for s in transcript.spoken for w in s.final.words]
    return body
