"""What the transcript store costs: rows per second at 16 streams, bytes per hour of speech,
time to read (and render) a 3-hour channel, with SQLite and, if installed, PostgreSQL.

Finals are the English recordings of ../shared/speech/manifest.tsv, one final per recording
(some 6 s of speech each, as the segmenter cuts), words timed evenly across it.

    python bench/store_bench.py [--rows-per-stream 2000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from captioncast.store import (  # noqa: E402
    AsyncStore,
    SqliteStore,
    StoredFinal,
    StoredWord,
    TranscriptStore,
    open_store,
)
from captioncast_client.caption_files import to_srt  # noqa: E402

SPEECH = ROOT.parent / "shared" / "speech" / "manifest.tsv"
STREAMS = 16
HOURS = 3.0
T0 = 1_780_000_000.0


def utterances() -> list[tuple[float, str]]:
    with SPEECH.open() as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["language"] == "en"]
    return [(float(r["duration_s"]), r["transcript"].strip()) for r in rows]


def finals_of(channel: str, speech: list[tuple[float, str]], seconds: float,
              first_seq: int = 1) -> Iterator[StoredFinal]:
    """A channel's finals over `seconds` of its timeline, a 0.5 s pause between them."""
    at, seq, n = 0.0, first_seq, 0
    while at < seconds:
        duration, text = speech[n % len(speech)]
        words = text.split()
        step = duration / max(1, len(words))
        yield StoredFinal(
            channel=channel, seq=seq, utterance=n, start=at, end=at + duration, text=text,
            language="en", session="bench-session",
            words=tuple(StoredWord(" " + w, at + i * step, at + (i + 1) * step, 0.87)
                        for i, w in enumerate(words)),
            received=T0 + at)
        at += duration + 0.5
        # Partials take seq numbers between finals: about one every 0.5 s of speech.
        seq += 1 + int(duration / 0.5)
        n += 1


class LoopLag:
    """The event loop's worst stall while it runs: a 1 ms ticker that reports how late it woke."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


async def throughput(store: TranscriptStore, speech: list[tuple[float, str]],
                     rows_per_stream: int) -> dict[str, float]:
    """16 streams putting finals as fast as they can; the loop's worst stall meanwhile."""
    streams = [list(itertools.islice(finals_of(f"tp-{i}", speech, 1e9), rows_per_stream))
               for i in range(STREAMS)]
    async with AsyncStore(store) as writer:
        async def stream(finals: list[StoredFinal]) -> None:
            for f in finals:
                while not writer.put(f):  # never when the queue has room
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0)  # the other streams speak too

        with LoopLag() as lag:
            start = time.perf_counter()
            await asyncio.gather(*(stream(finals) for finals in streams))
            assert await writer.flush(timeout=600)
            elapsed = time.perf_counter() - start
        rows = STREAMS * rows_per_stream
        return {"rows_per_s": rows / elapsed, "rows_per_batch": rows / max(1, writer.batches),
                "loop_lag_max_ms": lag.worst * 1000, "dropped": float(writer.dropped)}


async def durable_latency(store: TranscriptStore, speech: list[tuple[float, str]],
                          seconds: float = 10.0, interval: float = 0.05) -> dict[str, float]:
    """16 streams each awaiting the commit of a final every 50 ms (some 100 times a
    speaker's rate): what `await store.write(final)` costs a stream."""
    waits: list[float] = []
    async with AsyncStore(store) as writer:
        async def stream(i: int) -> None:
            deadline = time.perf_counter() + seconds
            for f in finals_of(f"lat-{i}", speech, 1e9):
                if time.perf_counter() > deadline:
                    return
                before = time.perf_counter()
                assert await writer.write(f, wait=10)
                waits.append(time.perf_counter() - before)
                await asyncio.sleep(interval)

        with LoopLag() as lag:
            await asyncio.gather(*(stream(i) for i in range(STREAMS)))
    waits.sort()
    return {"commit_p50_ms": 1000 * statistics.median(waits),
            "commit_p95_ms": 1000 * waits[int(0.95 * (len(waits) - 1))],
            "commit_max_ms": 1000 * waits[-1], "commit_loop_lag_max_ms": 1000 * lag.worst}


def three_hours(store: TranscriptStore, speech: list[tuple[float, str]],
                size: Callable[[], int]) -> dict[str, float]:
    before = size()
    finals = list(finals_of("lecture-3h", speech, HOURS * 3600))
    for i in range(0, len(finals), 500):
        store.write(finals[i : i + 500])
    grown = size() - before
    reads, renders = [], []
    for _ in range(5):
        t = time.perf_counter()
        got = store.finals("lecture-3h")
        reads.append(time.perf_counter() - t)
        t = time.perf_counter()
        to_srt([f.to_dict() for f in got])
        renders.append(time.perf_counter() - t)
    assert len(got) == len(finals)
    words = sum(len(f.words) for f in finals)
    return {"finals_per_hour": len(finals) / HOURS, "words_per_hour": words / HOURS,
            "bytes_per_hour": grown / HOURS, "read_3h_ms": 1000 * statistics.median(reads),
            "read_and_srt_3h_ms": 1000 * (statistics.median(reads) + statistics.median(renders))}


def sqlite_size(directory: Path) -> Callable[[], int]:
    def size() -> int:
        import sqlite3

        path = directory / "transcripts.sqlite3"
        with sqlite3.connect(path) as conn:  # the WAL into the file: count pages once
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in directory.iterdir())
    return size


def postgres_size(url: str) -> Callable[[], int]:
    def size() -> int:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute("SELECT sum(pg_total_relation_size(c)) FROM unnest("
                               "ARRAY['channels', 'finals', 'sessions']::regclass[]) c"
                               ).fetchone()
            return int(row[0]) if row else 0
    return size


async def idle_lag(seconds: float = 5.0) -> float:
    with LoopLag() as lag:
        await asyncio.sleep(seconds)
    return 1000 * lag.worst


def run(name: str, make: Callable[[], TranscriptStore], size: Callable[[], int],
        speech: list[tuple[float, str]], rows_per_stream: int) -> None:
    print(f"## {name}")
    results = asyncio.run(throughput(make(), speech, rows_per_stream))
    results |= asyncio.run(durable_latency(make(), speech))
    store = make()
    results |= three_hours(store, speech, size)
    store.close()
    for key, value in results.items():
        print(f"{key:>22} {value:12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-stream", type=int, default=2000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    speech = utterances()
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {len(speech)} English "
          f"utterances, {statistics.mean(d for d, _ in speech):.1f} s each; "
          f"idle loop lag max {asyncio.run(idle_lag()):.1f} ms (the machine's own noise)")
    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=ROOT) as tmp:
        data = Path(tmp) / "data"
        run("SQLite (WAL, synchronous=NORMAL, local disk)", lambda: SqliteStore(data),
            sqlite_size(data), speech, args.rows_per_stream)
    if args.no_postgres:
        return
    from tests.integration.postgres import Postgres, why_not

    if (reason := why_not()) is not None:
        print(f"PostgreSQL skipped: {reason}")
        return
    cluster = Postgres(fsync=True)  # unlike the tests': commit latency is measured
    try:
        cluster.start()
        url = cluster.url()
        run("PostgreSQL (local cluster, loopback TCP)", lambda: open_store(url),
            postgres_size(url), speech, args.rows_per_stream)
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
