"""The transcript store as the running server uses it: events to rows, reads, retention, health.

Every final of every channel is written as it is fanned out: `record` hands the channel
hub an awaitable that the hub and the speaker's connection wait on (at most
`durable_wait_s`) before sending the final on, so a final that any client has received
is committed, and a slow or absent store delays captions by that bound at worst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from captioncast.protocol.events import End, Event, Final, Partial, Speakers
from captioncast.store import (
    AsyncStore,
    ChannelInfo,
    ChannelPage,
    Mark,
    Position,
    StoredFinal,
    StoreError,
    WriterOptions,
    open_store,
)

if TYPE_CHECKING:
    from captioncast.store import TranscriptStore

log = logging.getLogger("captioncast.archive")

T = TypeVar("T")
POSITION_WAIT_S = 2.0  # a new channel waits this long to learn where it stood


@dataclass(frozen=True)
class StoreOptions:
    """Where finals are kept: None keeps them in memory only."""

    where: str | None = None  # a SQLite file or data dir, ":memory:", or postgresql://...
    retention_days: float = 0.0  # channels last live longer ago are deleted; 0: kept
    # A final reaches its clients once stored, or after this long (it is written later).
    durable_wait_s: float = 0.25
    max_queued: int = 50_000  # finals held while the store is away; more are dropped
    retention_every_s: float = 3600.0




def stored_final(channel: str, final: Final, session: str) -> StoredFinal:
    return StoredFinal(
        channel=channel, seq=final.seq, utterance=final.utterance, start=final.start,
        end=final.end, text=final.text, language=final.language,
        words=final.words,
        session=session, received=time.time(), speaker=final.speaker,
        speaker_name=final.speaker_name, source_channel=final.source_channel)


def as_event(final: StoredFinal) -> Final:
    """A stored final as the event viewers were sent."""
    return Final(final.seq, utterance=final.utterance, start=final.start, end=final.end,
                 text=final.text, language=final.language,
                 words=final.words, speaker=final.speaker, speaker_name=final.speaker_name,
                 source_channel=final.source_channel)


class Archive:
    """One server's transcript store: `async with Archive.open(options) as archive:`."""

    def __init__(self, store: TranscriptStore, options: StoreOptions) -> None:
        self.options = options
        self.store = AsyncStore(store, WriterOptions(max_queued=options.max_queued,
                                                     durable_wait_s=options.durable_wait_s))
        self.late = 0  # finals sent on before their commit (the store was slow or away)
        # What storing adds to a final's latency: from the final to its commit, recent ones.
        self.waits: deque[float] = deque(maxlen=1000)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._retention: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, options: StoreOptions) -> Archive:
        """StoreError (with a message a person reads) if the store cannot be opened."""
        assert options.where is not None
        return cls(open_store(options.where), options)

    async def __aenter__(self) -> Archive:
        self.store.start()
        if self.options.retention_days > 0:
            self._retention = asyncio.create_task(self._expire_loop())
        log.info("event=store_open backend=%s where=%s retention_days=%g",
                 self.store.store.backend, _redact(self.options.where),
                 self.options.retention_days)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        await self.store.aclose()

    # -- writes -------------------------------------------------------------------------

    def record(self, channel: str, event: Event, session: str) -> Awaitable[bool] | None:
        """Store a channel's event: a final (awaitable: True once committed, False after
        the bound), or the seq of a partial or an end (a mark, nothing to wait for)."""
        if isinstance(event, Final):
            task = asyncio.ensure_future(self.store.write(stored_final(channel, event, session)))
            self._tasks.add(task)
            started = time.monotonic()
            task.add_done_callback(lambda done: self._written(done, started))
            return task
        if isinstance(event, Partial | End):
            self.store.put(Mark(channel, time.time(), event.seq, session))
        elif isinstance(event, Speakers):
            self.store.put(Mark(channel, time.time(), event.seq, session,
                                speakers=event.speakers))
        return None

    def _written(self, task: asyncio.Task[bool], started: float) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if task.result():
            self.waits.append(time.monotonic() - started)
        else:
            self.late += 1

    # -- reads --------------------------------------------------------------------------

    async def position(self, channel: str) -> Position | None:
        """Where the channel stood, None if it is new; StoreError if the store did not
        answer in time."""
        try:
            return await asyncio.wait_for(_again(lambda: self.store.position(channel)),
                                          POSITION_WAIT_S)
        except TimeoutError:
            raise StoreError(f"no answer within {POSITION_WAIT_S:g} s") from None

    async def finals(self, channel: str, *, since: int = 0, before: int | None = None,
                     start: float | None = None, end: float | None = None) -> list[StoredFinal]:
        finals = await _again(lambda: self.store.finals(channel, since=since, start=start,
                                                        end=end))
        return [f for f in finals if before is None or f.seq < before]

    async def speakers(self, channel: str) -> Speakers | None:
        """The channel's newest speaker table, None if it never had one."""
        position = await _again(lambda: self.store.position(channel))
        return None if position is None else position.speakers_event()

    async def channel(self, name: str) -> ChannelInfo | None:
        return await _again(lambda: self.store.channel(name))

    async def channels(self, limit: int, after: str | None) -> ChannelPage:
        return await _again(lambda: self.store.channels(limit=limit, after=after))

    async def delete(self, name: str) -> bool:
        return await self.store.delete(name)

    # -- retention ----------------------------------------------------------------------

    async def expire(self) -> list[str]:
        names = await self.store.delete_older_than(self.options.retention_days)
        if names:
            log.info("event=store_expired channels=%d days=%g", len(names),
                     self.options.retention_days)
        return names

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.expire()
            except StoreError as error:
                log.warning("event=store_expire_failed error=%r", error.message)
            await asyncio.sleep(self.options.retention_every_s)

    # -- health -------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        waits = sorted(self.waits)
        return {**self.store.health().to_dict(), "late": self.late,
                "commit_wait_p50_s": round(waits[len(waits) // 2], 4) if waits else None,
                "commit_wait_p95_s": round(waits[int(len(waits) * 0.95)], 4) if waits else None}

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(_StoreCollector(self))


class _StoreCollector(Collector):
    """The writer's own counters, read when Prometheus scrapes."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def collect(self) -> Iterator[Metric]:
        health = self.archive.store.health()
        for name, text, value in (
            ("captioncast_store_written", "Finals and marks stored", health.written),
            ("captioncast_store_dropped", "Finals lost: the store's queue was full",
             health.dropped),
            ("captioncast_store_late", "Finals sent before their commit (store slow or away)",
             self.archive.late),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter
        queued = GaugeMetricFamily("captioncast_store_queued", "Rows waiting to be stored")
        queued.add_metric([], health.queued)
        yield queued
        degraded = GaugeMetricFamily("captioncast_store_degraded",
                                     "1 while writes to the store fail")
        degraded.add_metric([], 1 if health.status != "ok" else 0)
        yield degraded


async def _again(read: Callable[[], Awaitable[T]]) -> T:
    """A read, tried twice: the first after an outage fails on the connection that the
    outage broke (and that the failure drops)."""
    try:
        return await read()
    except StoreError as error:
        if not error.transient:
            raise
    return await read()


def _redact(where: str | None) -> str:
    """A Postgres URL without its password, for the log."""
    if where is None or "@" not in where:
        return str(where)
    scheme, _, rest = where.partition("://")
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}:***@{host}"
