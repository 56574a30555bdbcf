"""The decode scheduler driven step by step: a clock the test moves, decodes the test ends.

The scheduler reads its `clock` for deadlines and runs each decode in a thread. Here the
clock is a FakeClock (`DecodeScheduler(decoder, clock=FakeClock())`) that stands still
until the test moves it, and each decode waits until the test lets it finish, so that
what the scheduler decides depends on the order of events alone, not on how fast this
machine runs the threads or wakes the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.engine.scheduler import DecodeScheduler

DEADLINE_S = 30.0  # for a condition that never comes true: a failure, never a wait


class FakeClock:
    """A scheduler's `clock`: the time it says moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request(rid: int, kind: str, speculative: bool = False,
            language: str | None = "en") -> DecodeRequest:
    return DecodeRequest(rid, kind, 0, np.zeros(1600, np.float32),  # type: ignore[arg-type]
                         speculative=speculative, language=language)


class SteppedDecoder:
    """Each decode starts when a worker takes it and ends when the test says `finish()`."""

    name = "stepped"
    multilingual = False

    def __init__(self) -> None:
        self.entered = 0  # decodes a worker has started
        self.order: list[tuple[str, int]] = []  # decodes finished, in order
        self.efforts: dict[int, str] = {}  # request id: the effort it was decoded with
        self._finish = threading.Semaphore(0)
        self._open = False

    def decode(self, request: DecodeRequest) -> DecodeResult:
        self.entered += 1
        if not self._open and not self._finish.acquire(timeout=DEADLINE_S):
            raise RuntimeError("the test never finished this decode")
        self.order.append((request.kind, request.request_id))
        self.efforts[request.request_id] = request.effort
        return DecodeResult(text=f"r{request.request_id}", language="en")

    def finish(self, count: int = 1) -> None:
        for _ in range(count):
            self._finish.release()

    def open(self) -> None:
        """From now on every decode ends at once (the one waiting, too)."""
        self._open = True
        self._finish.release()

    @property
    def decoding(self) -> bool:
        return self.entered > len(self.order)


class SteppedBatchDecoder(SteppedDecoder):
    """A SteppedDecoder that also takes batches (as WhisperDecoder does on a GPU): each
    batch is one step, and the batches are noted as lists of request ids."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def decode_batch(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        self.batches.append([r.request_id for r in requests])
        self.entered += 1
        if not self._open and not self._finish.acquire(timeout=DEADLINE_S):
            raise RuntimeError("the test never finished this batch")
        results = []
        for r in requests:
            self.order.append((r.kind, r.request_id))
            self.efforts[r.request_id] = r.effort
            results.append(DecodeResult(text=f"r{r.request_id}", language="en"))
        self.entered += len(requests) - 1  # one entry per request, as decode counts them
        return results


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    """Yield to the loop (and the worker threads) until `condition` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def settle(scheduler: DecodeScheduler, decoder: SteppedDecoder) -> None:
    """Until the worker is in a decode, or has nothing left to take: what it does next
    then depends on the next step of the test alone."""
    await until(lambda: (decoder.entered == len(decoder.order) + 1)
                or (scheduler.depth == 0 and scheduler.running == 0
                    and not decoder.decoding), "the worker to take its next job")


async def finish_one(scheduler: DecodeScheduler, decoder: SteppedDecoder) -> None:
    """End the decode in progress; return once its result is out and the worker has
    taken its next job (or found none)."""
    done = len(decoder.order) + 1
    decoder.finish()
    await until(lambda: len(decoder.order) == done, "the decode to finish")
    await until(lambda: scheduler.running == 0 or decoder.entered == done + 1,
                "the worker to hand the result on")
    await settle(scheduler, decoder)


class Simulation:
    """A stepped scheduler on a clock in whole milliseconds, where a decode takes
    `decode_ms` of that clock: the test says what arrives when, the simulation ends each
    decode when its time is up and lets the worker take the next one."""

    def __init__(self, scheduler: DecodeScheduler, decoder: SteppedDecoder, clock: FakeClock,
                 decode_ms: int) -> None:
        self.scheduler, self.decoder, self.clock = scheduler, decoder, clock
        self.decode_ms = decode_ms
        self.base = clock.now
        self.ms = 0
        self._started_ms = 0
        self._started = 0

    async def tick(self, ms: int) -> None:
        """Move the clock on; the decode in progress ends once it has taken decode_ms."""
        self.ms += ms
        self.clock.now = self.base + self.ms / 1000
        if self.decoder.decoding and self.ms - self._started_ms >= self.decode_ms:
            await finish_one(self.scheduler, self.decoder)
            self._note_start()

    async def settle(self) -> None:
        """After submitting: until the worker has taken what it takes now."""
        await settle(self.scheduler, self.decoder)
        self._note_start()

    def _note_start(self) -> None:
        if self.decoder.entered > self._started:
            self._started = self.decoder.entered
            self._started_ms = self.ms
