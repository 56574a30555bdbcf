"""The store as the event loop sees it: one writer thread behind a bounded queue, reads in
worker threads, and a health report.

A final accepted by `put` or `write` is never dropped: a failed batch stays at the head of
the queue and is retried (a full disk, a read-only file, Postgres away) until it is stored.
What does not fit in the bound is refused at once and counted, so that captioning never
waits on the store for longer than the caller chooses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from captioncast.store.model import (
    ChannelInfo,
    ChannelPage,
    Mark,
    Position,
    StoredFinal,
    StoreError,
    StoreHealth,
)
from captioncast.store.transcript_store import TranscriptStore
from captioncast.store.voices import StoredVoice

log = logging.getLogger("captioncast.store")

T = TypeVar("T")
Item = StoredFinal | Mark


@dataclass(frozen=True)
class WriterOptions:
    # 16 busy streams say about one final every 2 s each: 50,000 rows are some 1.7 hours of
    # a whole server's finals held while the store is away, a few tens of MB.
    max_queued: int = 50_000
    # Rows per transaction: bounds one commit's time, so a durable `write` waits little.
    max_batch: int = 500
    retry_first_s: float = 0.2
    retry_max_s: float = 5.0
    # How long `write` waits for its commit by default; the final stays queued after.
    durable_wait_s: float = 0.5
    close_wait_s: float = 10.0  # at shutdown, to write what is still queued


class _Command:
    """An operation run by the writer thread in queue order (a delete after the writes)."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self.run = run
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


def _resolve(future: concurrent.futures.Future[Any], value: Any = None,
             error: BaseException | None = None) -> None:
    try:
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
    except concurrent.futures.InvalidStateError:  # the waiter gave up (a timeout)
        pass


def _store_error(error: Exception) -> StoreError:
    if isinstance(error, StoreError):
        return error
    log.exception("event=store_bug error=%r", error)
    return StoreError(repr(error), transient=False)


class AsyncStore:
    """`async with AsyncStore(SqliteStore(path)) as store:` then `store.put(final)`."""

    def __init__(self, store: TranscriptStore, options: WriterOptions | None = None) -> None:
        self.store = store
        self.options = options or WriterOptions()
        self._cond = threading.Condition()
        self._queue: deque[Item | _Command] = deque()
        self._queued_items = 0
        self._accepted = 0  # tickets: the n-th accepted item is done when _done >= n
        self._done = 0
        self._waiters: deque[tuple[int, concurrent.futures.Future[None]]] = deque()
        self.written = 0
        self.batches = 0  # transactions that stored something
        self.dropped = 0
        self.rejected = 0
        self._error: str | None = None
        self._error_at: float | None = None
        self._stopping = False
        self._abandon = False
        self._give_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="captioncast-store",
                                        daemon=True)

    # Lifecycle
    async def __aenter__(self) -> AsyncStore:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def start(self) -> None:
        self._thread.start()

    async def aclose(self, timeout: float | None = None) -> None:
        """Write what is queued (for `close_wait_s` at most), then close the store."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        wait = self.options.close_wait_s if timeout is None else timeout
        started = self._thread.ident is not None
        if started:
            await asyncio.to_thread(self._thread.join, wait)
        with self._cond:
            lost = self._queued_items
            self._abandon = True
            self._cond.notify_all()
        self._give_up.set()
        if lost:
            log.error("event=store_close_lost queued=%d error=%r", lost, self._error)
        if started:
            await asyncio.to_thread(self._thread.join, self.options.retry_max_s + 1)
        await asyncio.to_thread(self.store.close)

    # Writes (any thread; never blocks on the store)
    def put(self, item: Item) -> bool:
        """Queue a final or a mark; False (counted in `dropped`) when the queue is full."""
        return self._enqueue(item) is not None

    async def write(self, final: Item, wait: float | None = None) -> bool:
        """Queue `final` and wait up to `wait` s for its commit: True once it is stored;
        False if it is still queued (it will be written) or was dropped."""
        future = self._enqueue(final, waiter=True)
        if future is None:
            return False
        try:
            await asyncio.wait_for(asyncio.wrap_future(future),
                                   self.options.durable_wait_s if wait is None else wait)
            return True
        except TimeoutError:
            return False

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item accepted so far is stored; False on timeout."""
        with self._cond:
            if self._done >= self._accepted:
                return True
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._waiters.append((self._accepted, future))
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            return True
        except TimeoutError:
            return False

    def _enqueue(self, item: Item, waiter: bool = False
                 ) -> concurrent.futures.Future[None] | None:
        with self._cond:
            if self._stopping or self._queued_items >= self.options.max_queued:
                self.dropped += 1
                # Logged at the first and then every 1000th, not once per final.
                if self.dropped % 1000 == 1:
                    log.error("event=store_overflow dropped=%d queued=%d channel=%s",
                              self.dropped, self._queued_items, item.channel)
                return None
            self._queue.append(item)
            self._queued_items += 1
            self._accepted += 1
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            if waiter:
                self._waiters.append((self._accepted, future))
            else:
                future.set_result(None)
            self._cond.notify()
            return future

    # Operations in queue order, and reads
    async def delete(self, name: str) -> bool:
        return bool(await self._command(lambda: self.store.delete(name)))

    async def delete_older_than(self, days: float, now: float | None = None) -> list[str]:
        names: list[str] = await self._command(lambda: self.store.delete_older_than(days, now))
        return names

    # Enrolled voices (store/voices.py): writes in queue order like a channel's delete.
    async def add_voice(self, voice: StoredVoice) -> None:
        await self._command(lambda: self.store.add_voice(voice))

    async def delete_voice(self, voice_id: str) -> bool:
        return bool(await self._command(lambda: self.store.delete_voice(voice_id)))

    async def voices(self) -> list[StoredVoice]:
        return await asyncio.to_thread(self.store.voices)

    async def _command(self, run: Callable[[], T]) -> T:
        command = _Command(run)
        with self._cond:
            if self._stopping:
                raise StoreError("the store is closing")
            self._queue.append(command)
            self._cond.notify()
        result: T = await asyncio.wrap_future(command.future)
        return result

    async def finals(self, channel: str, *, since: int = 0, start: float | None = None,
                     end: float | None = None, limit: int | None = None) -> list[StoredFinal]:
        return await asyncio.to_thread(self.store.finals, channel, since=since, start=start,
                                       end=end, limit=limit)

    async def position(self, channel: str) -> Position | None:
        return await asyncio.to_thread(self.store.position, channel)

    async def channel(self, name: str) -> ChannelInfo | None:
        return await asyncio.to_thread(self.store.channel, name)

    async def channels(self, *, limit: int = 100, after: str | None = None) -> ChannelPage:
        return await asyncio.to_thread(self.store.channels, limit=limit, after=after)

    def health(self) -> StoreHealth:
        with self._cond:
            return StoreHealth(
                status="ok" if self._error is None else "degraded",
                backend=self.store.backend, queued=self._queued_items,
                written=self.written, dropped=self.dropped + self.rejected,
                last_error=self._error, last_error_at=self._error_at)

    # The writer thread
    def _next(self) -> list[Item] | _Command | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue or self._abandon:
                return None
            head = self._queue[0]
            if isinstance(head, _Command):
                return head
            batch: list[Item] = []
            for entry in self._queue:  # peek: a batch leaves the queue once it is stored
                if isinstance(entry, _Command) or len(batch) >= self.options.max_batch:
                    break
                batch.append(entry)
            return batch

    def _run(self) -> None:
        backoff = self.options.retry_first_s
        while (work := self._next()) is not None:
            if isinstance(work, _Command):
                with self._cond:
                    self._queue.popleft()
                try:
                    _resolve(work.future, work.run())
                except Exception as failure:
                    _resolve(work.future, error=failure)
                continue
            try:
                self.store.write(work)
            except Exception as error:  # the writer thread must outlive any one batch
                failed = _store_error(error)
                if failed.transient:
                    self._failed(failed, len(work))
                    self._give_up.wait(backoff)  # not woken by new finals: a real pause
                    backoff = min(backoff * 2, self.options.retry_max_s)
                    continue
                self._one_by_one(work)
            else:
                self._stored(len(work), len(work))
            backoff = self.options.retry_first_s

    def _one_by_one(self, batch: list[Item]) -> None:
        """A batch the engine refuses: store what it takes, count and log what it does not."""
        stored = 0
        for done, item in enumerate(batch):
            try:
                self.store.write([item])
                stored += 1
            except Exception as error:
                exc = _store_error(error)
                if exc.transient:  # the store went away meanwhile: retry the rest later
                    self._stored(done, stored)
                    self._failed(exc, len(batch) - done)
                    return
                log.error("event=store_rejected channel=%s seq=%s error=%r",
                          item.channel, item.seq, exc.message)
                with self._cond:
                    self.rejected += 1
        self._stored(len(batch), stored)

    def _failed(self, exc: StoreError, pending: int) -> None:
        with self._cond:
            first = self._error is None
            self._error, self._error_at = exc.message, time.time()
        if first:
            log.error("event=store_degraded pending=%d error=%r", pending, exc.message)

    def _stored(self, done: int, written: int) -> None:
        with self._cond:
            for _ in range(done):
                self._queue.popleft()
            self._queued_items -= done
            self._done += done
            self.written += written
            self.batches += 1 if written else 0
            recovered, self._error = self._error, None
            while self._waiters and self._waiters[0][0] <= self._done:
                _resolve(self._waiters.popleft()[1])
        if recovered is not None and done:
            log.info("event=store_recovered written=%d", written)

