"""Shares one decoder between sessions: earliest deadline first, partials coalesced.

Every live decode gets a deadline when it is first asked for: a final must go out
within `final_budget_s`, a partial within `partial_budget_s`. Workers take the
earliest deadline. With budgets of 0.5 s and 3 s finals go first in practice, yet
a partial that has waited 2.5 s longer than a new final gets its turn, so no session's
partials starve under a steady stream of finals. A session has at most one partial
queued: a newer one replaces it and keeps its place in line (its deadline), so a busy
machine refreshes each session's partial in turn instead of decoding stale audio,
and the partial rate per session falls by itself as load rises.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from captioncast.core.decoding import BatchDecoder, Decoder, DecodeRequest, DecodeResult

log = logging.getLogger("captioncast.scheduler")
T = TypeVar("T")

_NO_AUDIO = np.zeros(0, np.float32)

# File transcription (POST /v1/transcribe) waits behind every live decode: a live caption
# is late after a second, a file's transcript is not.
_LIVE, _BACKGROUND = 0, 1


@dataclass(frozen=True)
class Budgets:
    final_s: float = 0.5
    partial_s: float = 3.0
    # A speculative final (asked when a pause began) is due when the pause would end the
    # utterance, about 0.3 s later (segmenter end_hangover_s - speculate_after_s): finals
    # already known go first, and under load many speculations are cancelled unqueued.
    speculative_s: float = 0.8
    # With more live finals than this per worker waiting behind the one taken, finals are
    # decoded with less effort (decode.busy_final_beam_size) until the backlog clears.
    # Off (0) by default: on 2 cores, 16 streams, beam 2 changed nothing and beam 1 cut
    # final latency by a fifth for 9 % more errors (bench/RESULTS.md, load); an operator
    # who would rather have that trade sets it to 1.
    busy_finals_per_worker: float = 0.0

    def of(self, request: DecodeRequest) -> float:
        if request.kind != "final":
            return self.partial_s
        return self.speculative_s if request.speculative else self.final_s


@dataclass(order=True)
class _Job:
    key: tuple[int, float, int]  # (live or background, deadline, arrival order)
    owner: str = field(compare=False)
    request: DecodeRequest = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    queued_at: float = field(compare=False)
    # Other model work on the same threads (a speaker embedding): run instead of a decode.
    call: Callable[[], Any] | None = field(default=None, compare=False)


@dataclass
class SchedulerStats:
    decodes: dict[str, int] = field(default_factory=lambda: {"partial": 0, "final": 0})
    busy_seconds: float = 0.0
    audio_seconds: float = 0.0
    replaced_partials: int = 0
    busy_finals: int = 0  # finals decoded with less effort because of a backlog
    batches: int = 0  # model calls that decoded more than one request
    last_wait: float = 0.0
    missed_deadlines: dict[str, int] = field(default_factory=lambda: {"partial": 0, "final": 0})


class DecodeScheduler:
    """An async front for a blocking decoder, run by `workers` threads.

    A session never has two partial decodes queued: a newer partial replaces the
    older one, whose future is cancelled. Finals are never dropped.
    `on_decoded(request, decode_seconds, waited_seconds, live)` reports each finished decode
    (`live`: False for background work). `clock` is where deadlines and waits are read
    from: a test passes one it moves, so what is decided does not hang on machine speed.
    """

    def __init__(self, decoder: Decoder, workers: int = 1,
                 on_decoded: Callable[[DecodeRequest, float, float, bool], None] | None = None,
                 budgets: Budgets | None = None,
                 clock: Callable[[], float] = time.monotonic, batch: int = 1) -> None:
        self.decoder = decoder
        self.workers = workers
        self.batch = max(1, batch)
        self.budgets = budgets or Budgets()
        self._clock = clock
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
        now = self._clock()
        queued_at = now
        if request.kind == "partial":
            for job in self._queue:
                if job.owner == owner and job.request.kind == "partial" and job.call is None:
                    self._queue.remove(job)
                    job.future.cancel()
                    self.stats.replaced_partials += 1
                    queued_at = job.queued_at  # the refreshed partial keeps its place
                    break
        deadline = queued_at + self.budgets.of(request)
        self._queue.append(
            _Job((_BACKGROUND if background else _LIVE, deadline, next(self._order)),
                 owner, request, future, queued_at)
        )
        self._wakeup.set()
        return future

    def submit_call(self, owner: str, request_id: int, call: Callable[[], T],
                    budget_s: float) -> asyncio.Future[T]:
        """Queue other model work (a speaker embedding) among the decodes, due in
        `budget_s`: the same threads and the same earliest-deadline order, so it neither
        competes with decoding for cores nor waits behind a whole backlog."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        now = self._clock()
        # The job's request is a placeholder that names the call for cancel and drop.
        marker = DecodeRequest(request_id, "partial", -1, _NO_AUDIO)
        self._queue.append(_Job((_LIVE, now + budget_s, next(self._order)), owner, marker,
                                future, now, call))
        self._wakeup.set()
        return future

    def lag(self) -> float:
        """Seconds the oldest waiting live final has waited: the backlog, in time.

        Partials are left out: waiting is how they adapt to load, not a sign of overload.
        """
        live = [job.queued_at for job in self._queue
                if job.key[0] == _LIVE and job.request.kind == "final" and job.call is None]
        return self._clock() - min(live) if live else 0.0

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

    def _with_effort(self, job: _Job) -> DecodeRequest:
        """The job's request, marked "busy" when a round of finals or more waits behind it."""
        per_worker = self.budgets.busy_finals_per_worker
        request = job.request
        if per_worker <= 0 or request.kind != "final" or job.key[0] != _LIVE:
            return request
        waiting = sum(1 for j in self._queue if j.key[0] == _LIVE and j.request.kind == "final")
        if waiting <= per_worker * self.workers * self.batch:
            return request
        self.stats.busy_finals += 1
        return replace(request, effort="busy")

    def _companions(self, first: _Job) -> list[_Job]:
        """Queued jobs that can share `first`'s model call, earliest deadline first.

        One call has one beam and one task; a request that detects its language is
        decoded alone, since the batch's alignment needs one language's start sequence.
        """
        if self.batch <= 1 or not isinstance(self.decoder, BatchDecoder) \
                or first.request.language is None or first.call is not None:
            return []
        like = sorted(
            j for j in self._queue
            if j.key[0] == first.key[0] and j.request.kind == first.request.kind
            and j.call is None
            and j.request.task == first.request.task
            and j.request.language == first.request.language and not j.future.done()
        )[: self.batch - 1]
        for job in like:
            self._queue.remove(job)
        return like

    async def _decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        loop = asyncio.get_running_loop()
        if len(requests) == 1:
            return [await loop.run_in_executor(self._pool, self.decoder.decode, requests[0])]
        assert isinstance(self.decoder, BatchDecoder)
        return await loop.run_in_executor(self._pool, self.decoder.decode_batch, requests)

    async def _work(self) -> None:
        while True:
            first = await self._next()
            if first.future.done():
                continue
            if first.call is not None:
                await self._run_call(first)
                continue
            jobs = [first, *self._companions(first)]
            started = self._clock()
            self.stats.last_wait = started - first.queued_at
            request = self._with_effort(first)
            # a batch shares one beam: the first job's effort
            requests = [replace(j.request, effort=request.effort) for j in jobs]
            self.running += 1
            try:
                results = await self._decode(requests)
            except asyncio.CancelledError:
                for job in jobs:
                    job.future.cancel()
                raise
            except Exception as exc:
                log.exception("event=decode_failed kind=%s batch=%d", first.request.kind,
                              len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.running -= 1
                elapsed = self._clock() - started
                self.stats.busy_seconds += elapsed
            if len(jobs) > 1:
                self.stats.batches += 1
            for job, result in zip(jobs, results, strict=True):
                self._finished(job, result, elapsed / len(jobs), started - job.queued_at)

    async def _run_call(self, job: _Job) -> None:
        assert job.call is not None
        self.running += 1
        started = self._clock()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, job.call)
        except asyncio.CancelledError:
            job.future.cancel()
            raise
        except Exception as exc:
            log.exception("event=model_call_failed owner=%s", job.owner)
            if not job.future.done():
                job.future.set_exception(exc)
            return
        finally:
            self.running -= 1
            self.stats.busy_seconds += self._clock() - started
        if not job.future.done():
            job.future.set_result(result)

    def _finished(self, job: _Job, result: DecodeResult, decode_s: float,
                  waited: float) -> None:
        """Account for one decode (its share of a batch's time) and hand its result on."""
        self.stats.decodes[job.request.kind] += 1
        self.stats.audio_seconds += job.request.duration
        if job.key[0] == _LIVE and self._clock() > job.key[1]:
            self.stats.missed_deadlines[job.request.kind] += 1
        if self._on_decoded is not None:
            self._on_decoded(job.request, decode_s, waited, job.key[0] == _LIVE)
        if not job.future.done():
            job.future.set_result(result)
