"""The Hugging Face Inference API's route, `POST /models/{model_id}`, onto file transcription.

The body is the audio file itself, or JSON that api/huggingface.py translates. Any model
id is accepted and served by the loaded model, which the `X-Captioncast-Model` header
names. Errors are HF's `{"error": ...}`.
"""

from __future__ import annotations

import io
import re
from typing import IO

from captioncast.api.huggingface import error_body, parse_json_body, parse_parameters, render
from captioncast.core.transcript import TranscribeParams
from captioncast.errors import CaptioncastError
from captioncast.transport.file_routes import TranscribeRoutes
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.responses import HttpResponse, json_response, status_of
from captioncast.transport.uploads import spool_body

PREFIX = "/models/"
PATH = re.compile(r"/models/.+")  # the route: any model id, checked by MODEL_ID
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
MAX_JSON_OVERHEAD = 64 * 1024  # base64 is 4/3 of the audio; the rest is a few fields


def _hf_error(status: int, message: str) -> HttpResponse:
    return json_response(status, error_body(message))


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
        params, chunks, audio = parse_json_body(bytes(data))
        return params, chunks, io.BytesIO(audio)


def _mime(request: HttpRequest) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


async def _given(source: IO[bytes]) -> IO[bytes]:
    return source
