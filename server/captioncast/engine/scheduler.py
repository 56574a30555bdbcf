"""Shares one decoder between sessions: finals before partials, oldest first, partials coalesced."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType

from captioncast.core.decoding import Decoder, DecodeRequest, DecodeResult

log = logging.getLogger("captioncast.scheduler")

_PRIORITY = {"final": 0, "partial": 1}
# File transcription (POST /v1/transcribe) waits behind every live decode: a live caption
# is late after a second, a file's transcript is not.
_BACKGROUND_PRIORITY = 2


@dataclass(order=True)
class _Job:
    key: tuple[int, int]
    owner: str = field(compare=False)
    request: DecodeRequest = field(compare=False)
    future: asyncio.Future[DecodeResult] = field(compare=False)
    queued_at: float = field(compare=False)


@dataclass
class SchedulerStats:
    decodes: dict[str, int] = field(default_factory=lambda: {"partial": 0, "final": 0})
    busy_seconds: float = 0.0
    audio_seconds: float = 0.0
    replaced_partials: int = 0
    last_wait: float = 0.0


class DecodeScheduler:
    """An async front for a blocking decoder.

    A session never has two partial decodes queued: a newer partial replaces the
    older one, whose future is cancelled. Finals are never dropped.
    """

    def __init__(self, decoder: Decoder, workers: int = 1,
                 on_decoded: Callable[[DecodeRequest, float], None] | None = None) -> None:
        self.decoder = decoder
        self.workers = workers
        self._queue: list[_Job] = []
        self._wakeup = asyncio.Event()
        self._order = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._tasks: list[asyncio.Task[None]] = []
        self._on_decoded = on_decoded
        self.stats = SchedulerStats()
        self.running = 0

    async def __aenter__(self) -> DecodeScheduler:
        self._tasks = [asyncio.create_task(self._work(), name=f"decode-{i}")
                       for i in range(self.workers)]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, owner: str, request: DecodeRequest,
               background: bool = False) -> asyncio.Future[DecodeResult]:
        """Queue a decode; `background` ones run only when no live decode is waiting."""
        future: asyncio.Future[DecodeResult] = asyncio.get_running_loop().create_future()
        if request.kind == "partial":
            for job in self._queue:
                if job.owner == owner and job.request.kind == "partial":
                    self._queue.remove(job)
                    job.future.cancel()
                    self.stats.replaced_partials += 1
                    break
        self._queue.append(
            _Job((_BACKGROUND_PRIORITY if background else _PRIORITY[request.kind],
                  next(self._order)), owner, request, future,
                 time.monotonic())
        )
        self._wakeup.set()
        return future

    def cancel(self, owner: str, request_id: int) -> None:
        """Forget a queued request; one already decoding finishes and is ignored."""
        for job in self._queue:
            if job.owner == owner and job.request.request_id == request_id:
                self._queue.remove(job)
                job.future.cancel()
                return

    def drop_owner(self, owner: str) -> None:
        """A session went away: nothing it asked for is worth decoding."""
        for job in [j for j in self._queue if j.owner == owner]:
            self._queue.remove(job)
            job.future.cancel()

    async def _next(self) -> _Job:
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        job = min(self._queue)
        self._queue.remove(job)
        return job

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._next()
            if job.future.done():
                continue
            self.stats.last_wait = time.monotonic() - job.queued_at
            started = time.monotonic()
            self.running += 1
            try:
                result = await loop.run_in_executor(self._pool, self.decoder.decode, job.request)
            except asyncio.CancelledError:
                job.future.cancel()
                raise
            except Exception as exc:
                log.exception("event=decode_failed kind=%s", job.request.kind)
                if not job.future.done():
                    job.future.set_exception(exc)
                continue
            finally:
                self.running -= 1
                elapsed = time.monotonic() - started
                self.stats.busy_seconds += elapsed
            self.stats.decodes[job.request.kind] += 1
            self.stats.audio_seconds += job.request.duration
            if self._on_decoded is not None:
                self._on_decoded(job.request, elapsed)
            if not job.future.done():
                job.future.set_result(result)
