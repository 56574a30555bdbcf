"""`POST /v1/transcribe` and OpenAI's `POST /v1/audio/transcriptions`: a file in, a transcript out.

The file goes through a `FileTranscription` (session/file_session.py): the same
CaptionSession as a live stream, its decodes on the shared scheduler at background
priority. Here: the forms in, the admission of files, the answers out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import IO

import numpy as np

from captioncast.core.transcript import (
    CONTENT_TYPES,
    TranscribeParams,
    Transcript,
    parse_openai_form,
    parse_transcribe_query,
)
from captioncast.errors import CaptioncastError, Overloaded
from captioncast.options import TranscribeOptions
from captioncast.protocol.events import Error, Event
from captioncast.session.file_session import FileTranscription
from captioncast.transport.http_exchange import HttpRequest
from captioncast.transport.http_front import PostHandler
from captioncast.transport.responses import HttpResponse, json_response, status_of
from captioncast.transport.server_context import ServerContext
from captioncast.transport.uploads import decode_file, decode_raw, read_form, spool_body

RETRY_AFTER_S = 10  # a file takes seconds to minutes: a refused client tries again then
log = logging.getLogger("captioncast.transcribe")


class TranscribeRoutes:
    """The two POST routes, sharing one limit on files transcribed at once."""

    def __init__(self, ctx: ServerContext, options: TranscribeOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.active = 0

    def routes(self) -> dict[str, PostHandler]:
        return {"/v1/transcribe": self.transcribe, "/v1/audio/transcriptions": self.openai}

    def _admit(self) -> None:
        if not self.ctx.ready:
            raise Overloaded("the model is still loading or the server is shutting down; "
                             f"retry after {RETRY_AFTER_S} s", retry_after_s=RETRY_AFTER_S)
        if self.active >= self.options.max_concurrent:
            raise Overloaded(f"the server is transcribing {self.active} files, its limit; "
                             f"retry after {RETRY_AFTER_S} s", retry_after_s=RETRY_AFTER_S)

    async def transcribe(self, request: HttpRequest) -> HttpResponse:
        params = parse_transcribe_query(request.query_dict())
        self.ctx.check_model_support(params.audio)
        self._admit()
        self.active += 1
        try:
            source = await spool_body(request.body, self.options.max_upload_bytes)
        except BaseException:
            self.active -= 1
            raise
        chunks = decode_raw(source, params.audio) if params.raw else decode_file(source)
        if params.format == "ndjson":
            return HttpResponse(200, self._ndjson(params, source, chunks),
                                CONTENT_TYPES["ndjson"])
        return self._render(params, await self._run(params, source, chunks))

    async def openai(self, request: HttpRequest) -> HttpResponse:
        try:
            self._admit()
            self.active += 1
            try:
                fields, source = await read_form(
                    request.body, request.headers.get("Content-Type", ""),
                    self.options.max_upload_bytes)
                params = parse_openai_form(fields)
                self.ctx.check_model_support(params.audio)
            except BaseException:
                self.active -= 1
                raise
            return self._render(params, await self._run(params, source, decode_file(source)))
        except CaptioncastError as error:
            # OpenAI's error shape, so that SDKs show the message.
            return json_response(status_of(error), {"error": {
                "message": error.message, "type": "invalid_request_error", "param": None,
                "code": error.code}})

    async def transcribe_upload(self, params: TranscribeParams,
                                receive: Callable[[int], Awaitable[IO[bytes]]]) -> Transcript:
        """Admit, `receive(max_upload_bytes)` the file, transcribe it: for the POST routes
        of other APIs (transport/huggingface.py), on the same limits and scheduler."""
        self.ctx.check_model_support(params.audio)
        self._admit()
        self.active += 1
        try:
            source = await receive(self.options.max_upload_bytes)
        except BaseException:
            self.active -= 1
            raise
        return await self._run(params, source, decode_file(source))

    async def _run(self, params: TranscribeParams, source: IO[bytes],
                   chunks: Iterator[np.ndarray],
                   on_event: Callable[[Event], None] | None = None) -> Transcript:
        """Transcribe; `self.active` was counted by the caller and is released here."""
        job = FileTranscription(self.ctx, params, on_event)
        started = time.monotonic()
        try:
            transcript = await job.run(chunks)
        finally:
            self.active -= 1
            source.close()
        elapsed = time.monotonic() - started
        log.info("event=transcribed owner=%s audio_s=%.1f seconds=%.2f rtf=%.3f segments=%d "
                 "language=%s task=%s format=%s", job.owner, transcript.duration, elapsed,
                 elapsed / max(transcript.duration, 1e-3), len(transcript.spoken),
                 transcript.language, params.audio.task, params.format)
        if job.errors and not transcript.spoken:
            raise CaptioncastError(job.errors[0].message)
        return transcript

    def _render(self, params: TranscribeParams, transcript: Transcript) -> HttpResponse:
        body = transcript.render(params)
        data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False) + "\n"
        return HttpResponse(200, data.encode(), CONTENT_TYPES[params.format])

    async def _ndjson(self, params: TranscribeParams, source: IO[bytes],
                      chunks: Iterator[np.ndarray]) -> AsyncIterator[bytes]:
        """Finals as they are decided (a progress bar follows their `end`), then `end`, then
        the whole transcript as `{"type":"transcript",...}`; an error is an `error` line."""
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()

        def on_event(event: Event) -> None:
            lines.put_nowait((event.to_json() + "\n").encode())

        async def work() -> None:
            try:
                transcript = await self._run(params, source, chunks, on_event)
                lines.put_nowait((json.dumps({"type": "transcript", **transcript.to_json(True)},
                                             ensure_ascii=False) + "\n").encode())
            except CaptioncastError as error:
                on_event(Error(0, code=error.code, message=error.message))
            finally:
                lines.put_nowait(None)

        task = asyncio.create_task(work())
        try:
            while (line := await lines.get()) is not None:
                yield line
        finally:
            task.cancel()  # the client went away: stop decoding for it
            await asyncio.gather(task, return_exceptions=True)
