"""File transcription's session: one uploaded file through one CaptionSession.

The file goes through the same CaptionSession as a live stream (segmentation, guards
against hallucination, prompts from earlier finals), with partials off, and its decodes
go to the shared scheduler at background priority, behind every live session. The
routes that take files (transport/file_routes.py, transport/huggingface.py) run it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.options import PolicyOptions, SessionConfig
from captioncast.core.policy import CaptionSession
from captioncast.core.transcript import Segment, TranscribeParams, Transcript
from captioncast.protocol.events import End, Error, Event, Final
from captioncast.session.driver import ScheduledDecodes, SessionDriver
from captioncast.session.file_speakers import FileSpeakers
from captioncast.session.link import SessionHost
from captioncast.text.profanity import masking


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

    def __init__(self, ctx: SessionHost, params: TranscribeParams,
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
        self._results: dict[int, DecodeResult] = {}  # utterance -> its final decode
        self._decodes = ScheduledDecodes(ctx.scheduler, self.owner, background=True)
        self.driver = SessionDriver(
            self.session, self._decodes, on_decoded=self._decoded,
            on_event=masking(self._event, ctx.options.profanity, params.audio.profanity_filter))
        diarize = params.audio.diarize
        self.diarize = ctx.options.diarize if diarize is None else diarize
        self.speakers: FileSpeakers | None = None

    async def run(self, chunks: Iterator[np.ndarray]) -> Transcript:
        """Decode `chunks` (blocking, in a thread of its own) and transcribe them."""
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-decode")
        try:
            if self.diarize:  # loading the encoder the first time reads its weights
                rooms = self.ctx.speaker_rooms
                encoder = await loop.run_in_executor(pool, lambda: rooms.encoder)
                self.speakers = FileSpeakers(self.owner, self.ctx.scheduler, encoder,
                                             self.session.voiced_mask,
                                             rooms.options.roster)
            self.session.start()  # `ready` is for streams: a file's answer has none
            while (audio := await loop.run_in_executor(pool, next, chunks, None)) is not None:
                if self.speakers is not None:
                    self.speakers.push(audio)
                self.driver.dispatch(self.session.feed(audio))
                while self.driver.inflight:
                    await self._decodes.settle()
            self.driver.dispatch(self.session.eos())
            while not self.session.finished:
                await self._decodes.settle()
            if self.speakers is not None:
                await self._label(self.speakers)
        finally:
            self.driver.close()
            if self.speakers is not None:
                self.speakers.close()
            # The generator may be mid-step in the pool: close it there, after that step.
            pool.submit(getattr(chunks, "close", lambda: None))
            pool.shutdown(wait=False)
        return Transcript(tuple(self.segments), self.session.duration,
                          task=self.params.audio.task, fixed_language=self.fixed_language)

    async def _label(self, speakers: FileSpeakers) -> None:
        """Every spoken segment's speaker, clustered over the whole file."""
        spoken = [i for i, s in enumerate(self.segments) if s.final.text]
        labels = await speakers.labels([self.segments[i].final.utterance for i in spoken])
        for i, label in zip(spoken, labels, strict=True):
            segment = self.segments[i]
            self.segments[i] = dataclasses.replace(segment, final=segment.final.labelled(label))

    def _decoded(self, request: DecodeRequest, result: DecodeResult) -> None:
        if request.kind == "final":
            self._results[request.utterance] = result

    def _event(self, event: Event) -> None:
        if isinstance(event, Final):
            if self.speakers is not None:
                self.speakers.final(event)
            result = self._results.pop(event.utterance, None)
            self.segments.append(Segment(
                event,
                avg_logprob=result.avg_logprob if result else 0.0,
                no_speech_prob=result.no_speech_prob if result else 0.0,
                compression_ratio=result.compression_ratio if result else 1.0,
            ))
        elif isinstance(event, Error):
            self.errors.append(event)
        elif not isinstance(event, End):
            return
        if self.on_event is not None:
            self.on_event(event)
