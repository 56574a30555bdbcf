"""`POST /v1/transcribe` and OpenAI's `POST /v1/audio/transcriptions`: a file in, a transcript out.

The file goes through the same CaptionSession as a live stream (segmentation, guards
against hallucination, prompts from earlier finals), with partials off, and its decodes
go to the shared scheduler at background priority, behind every live session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import numpy as np

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.policy import Action, Cancel, CaptionSession, PolicyOptions, SessionConfig
from captioncast.core.transcript import (
    CONTENT_TYPES,
    Segment,
    TranscribeParams,
    Transcript,
    parse_openai_form,
    parse_transcribe_query,
)
from captioncast.errors import CaptioncastError, Overloaded
from captioncast.protocol.events import End, Error, Event, Final
from captioncast.transport.http_post import (
    HttpFront,
    HttpRequest,
    HttpResponse,
    json_response,
    status_of,
)
from captioncast.transport.stream import check_model_support
from captioncast.transport.uploads import decode_file, decode_raw, read_form, spool_body

if TYPE_CHECKING:
    from captioncast.transport.server import ServerContext

log = logging.getLogger("captioncast.transcribe")


@dataclass(frozen=True)
class TranscribeOptions:
    max_upload_bytes: int = 1024 * 1024 * 1024  # 1 GiB: hours of compressed audio
    max_concurrent: int = 4  # files transcribed at once; more get 503 (each waits on the model)


def file_policy(policy: PolicyOptions) -> PolicyOptions:
    """The live policy without speculative finals: a file has no listener waiting for the
    end of a pause, and a speculation that speech resumes after is a wasted decode.
    Utterance boundaries do not change."""
    # Any pause ends the utterance after end_hangover_s, long before this.
    never_s = 1e6
    return dataclasses.replace(
        policy, segmenter=dataclasses.replace(policy.segmenter, speculate_after_s=never_s))


class FileTranscription:
    """One file through one CaptionSession; one utterance decodes at a time.

    Waiting for each final before feeding on keeps memory flat (one utterance of audio
    in flight) and lets the next decode condition on the text before it, as it would live.
    """

    def __init__(self, ctx: ServerContext, params: TranscribeParams,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.ctx = ctx
        self.params = params
        self.owner = "file-" + secrets.token_urlsafe(9)
        language = params.audio.language or ctx.options.language
        self.fixed_language = None if language in (None, "auto") else language
        self.session = CaptionSession(
            SessionConfig(session_id=self.owner, model=ctx.model_name,
                          language=self.fixed_language, task=params.audio.task,
                          interim=False, words=True, prompt=params.audio.prompt),
            file_policy(ctx.options.policy),
        )
        self.on_event = on_event
        self.segments: list[Segment] = []
        self.errors: list[Error] = []
        self._inflight: dict[asyncio.Future[DecodeResult], DecodeRequest] = {}
        self._results: dict[int, DecodeResult] = {}  # utterance -> its final decode

    async def run(self, chunks: Iterator[np.ndarray]) -> Transcript:
        """Decode `chunks` (blocking, in a thread of its own) and transcribe them."""
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-decode")
        try:
            self.session.start()
            while (audio := await loop.run_in_executor(pool, next, chunks, None)) is not None:
                self._dispatch(self.session.feed(audio))
                while self._inflight:
                    await self._settle()
            self._dispatch(self.session.eos())
            while not self.session.finished:
                await self._settle()
        finally:
            self.ctx.scheduler.drop_owner(self.owner)
            # The generator may be mid-step in the pool: close it there, after that step.
            pool.submit(getattr(chunks, "close", lambda: None))
            pool.shutdown(wait=False)
        return Transcript(tuple(self.segments), self.session.duration,
                          task=self.params.audio.task, fixed_language=self.fixed_language)

    def _dispatch(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, DecodeRequest):
                future = self.ctx.scheduler.submit(self.owner, action, background=True)
                self._inflight[future] = action
            elif isinstance(action, Cancel):
                self.ctx.scheduler.cancel(self.owner, action.request_id)
                for future, request in list(self._inflight.items()):
                    if request.request_id == action.request_id:
                        del self._inflight[future]
            elif isinstance(action, Final):
                result = self._results.pop(action.utterance, None)
                self.segments.append(Segment(
                    action,
                    avg_logprob=result.avg_logprob if result else 0.0,
                    no_speech_prob=result.no_speech_prob if result else 0.0,
                    compression_ratio=result.compression_ratio if result else 1.0,
                ))
                self._emit(action)
            elif isinstance(action, Error):
                self.errors.append(action)
                self._emit(action)
            elif isinstance(action, End):
                self._emit(action)

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def _settle(self) -> None:
        """Wait for a decode and hand its result to the session."""
        if not self._inflight:
            raise RuntimeError("the session waits for a decode that was never asked for")
        done, _ = await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            request = self._inflight.pop(future)
            if future.cancelled():
                continue
            exc = future.exception()
            if exc is not None:
                self._dispatch(self.session.on_failure(request.request_id,
                                                       str(exc) or type(exc).__name__))
            else:
                result = future.result()
                if request.kind == "final":
                    self._results[request.utterance] = result
                self._dispatch(self.session.on_result(request.request_id, result))


class TranscribeRoutes:
    """The two POST routes, sharing one limit on files transcribed at once."""

    def __init__(self, ctx: ServerContext, options: TranscribeOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.active = 0

    def install(self, front: HttpFront) -> None:
        front.route("/v1/transcribe", self.transcribe)
        front.route("/v1/audio/transcriptions", self.openai)

    def _admit(self) -> None:
        if not self.ctx.ready:
            raise Overloaded("the model is still loading or the server is shutting down")
        if self.active >= self.options.max_concurrent:
            raise Overloaded(f"the server is transcribing {self.active} files, its limit; "
                             "try again later")

    async def transcribe(self, request: HttpRequest) -> HttpResponse:
        params = parse_transcribe_query(request.query_dict())
        check_model_support(params.audio, self.ctx)
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
                check_model_support(params.audio, self.ctx)
            except BaseException:
                self.active -= 1
                raise
            return self._render(params, await self._run(params, source, decode_file(source)))
        except CaptioncastError as error:
            # OpenAI's error shape, so that SDKs show the message.
            return json_response(status_of(error), {"error": {
                "message": error.message, "type": "invalid_request_error", "param": None,
                "code": error.code}})

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
