"""The Hugging Face Inference API for speech, `POST /models/{model_id}`, onto file transcription.

The body is the audio file itself, or JSON `{"inputs": BASE64, "parameters": {...}}`
(what `huggingface_hub` sends when there are parameters); the answer is
`{"text": ...}`, with `chunks` when `return_timestamps` asks (true: one per
utterance, "word": one per word). Any model id is accepted and served by the loaded
model, which the `X-Captioncast-Model` header names. Errors are HF's `{"error": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from typing import IO, Any

from captioncast.core.params import LANGUAGE_CODE, StreamParams
from captioncast.core.transcript import TranscribeParams, Transcript
from captioncast.errors import BadRequest, CaptioncastError
from captioncast.transport.file_routes import TranscribeRoutes
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.responses import HttpResponse, json_response, status_of
from captioncast.transport.uploads import spool_body

PREFIX = "/models/"
PATH = re.compile(r"/models/.+")  # the route: any model id, checked by MODEL_ID
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
MAX_JSON_OVERHEAD = 64 * 1024  # base64 is 4/3 of the audio; the rest is a few fields
PARAMETERS = frozenset({"return_timestamps", "generate_kwargs"})
GENERATE_KWARGS = frozenset({"language", "task"})


def _hf_error(status: int, message: str) -> HttpResponse:
    return json_response(status, {"error": message})


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


class HuggingFaceRoute:
    """`POST /models/{model_id}` on the server's file transcription."""

    def __init__(self, transcribe: TranscribeRoutes) -> None:
        self.transcribe = transcribe

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        model_id = request.path.removeprefix(PREFIX)
        if not MODEL_ID.fullmatch(model_id):
            return _hf_error(404, f"model {model_id!r} is not a model id (owner/name)")
        try:
            if _mime(request) == "application/json":
                params, chunks, source = await self._json(request)
            else:
                params, chunks = parse_parameters(None)
                source = None
            transcript = await self.transcribe.transcribe_upload(
                params, lambda limit: _given(source) if source is not None
                else spool_body(request.body, limit))
        except CaptioncastError as error:
            return _hf_error(status_of(error), error.message)
        response = json_response(200, render(transcript, chunks))
        # A client names a model; the loaded one answers, and says so.
        response.headers.extend([("X-Captioncast-Model", self.transcribe.ctx.model_name),
                                 ("X-Requested-Model", model_id)])
        return response

    async def _json(self, request: HttpRequest) -> tuple[TranscribeParams, str | None, IO[bytes]]:
        limit = self.transcribe.options.max_upload_bytes * 4 // 3 + MAX_JSON_OVERHEAD
        data = bytearray()
        async for chunk in request.body.chunks(limit):
            data.extend(chunk)
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
        return params, chunks, io.BytesIO(audio)


def _mime(request: HttpRequest) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


async def _given(source: IO[bytes]) -> IO[bytes]:
    return source
