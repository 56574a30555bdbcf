"""The transcript store on a real PostgreSQL: the contract SQLite passes, and a server
that goes away mid-stream and comes back."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Iterator

import pytest

from captioncast.protocol.events import SpeakerEntry
from captioncast.store import (
    AsyncStore,
    Mark,
    StoredVoice,
    StoreError,
    TranscriptStore,
    WriterOptions,
    open_store,
)
from tests.integration.postgres import Postgres, why_not
from tests.support.store_contract import MakeStore, StoreContract, final

pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))
_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    cluster = Postgres()
    cluster.start()
    yield cluster
    cluster.remove()


def new_database(postgres: Postgres) -> str:
    import psycopg

    name = f"t{next(_databases)}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url(name)


@pytest.fixture
def make_store(postgres: Postgres) -> Iterator[MakeStore]:
    url = new_database(postgres)  # each test on empty tables
    opened: list[TranscriptStore] = []

    def make() -> TranscriptStore:
        opened.append(open_store(url))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


class TestPostgresStore(StoreContract):
    pass


SCHEMA_V1 = """
CREATE TABLE captioncast_schema (version INTEGER NOT NULL);
INSERT INTO captioncast_schema VALUES (1);
CREATE TABLE channels (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL,
    last_live DOUBLE PRECISION NOT NULL, last_seq BIGINT NOT NULL DEFAULT 0,
    utterances BIGINT NOT NULL DEFAULT 0, finals BIGINT NOT NULL DEFAULT 0,
    words BIGINT NOT NULL DEFAULT 0, duration DOUBLE PRECISION NOT NULL DEFAULT 0,
    speech DOUBLE PRECISION NOT NULL DEFAULT 0);
CREATE TABLE finals (channel_id BIGINT NOT NULL, seq BIGINT NOT NULL,
    utterance BIGINT NOT NULL, session TEXT NOT NULL, t_start DOUBLE PRECISION NOT NULL,
    t_end DOUBLE PRECISION NOT NULL, text TEXT NOT NULL, language TEXT NOT NULL,
    words TEXT NOT NULL, n_words INTEGER NOT NULL, received DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel_id, seq));
CREATE TABLE sessions (channel_id BIGINT NOT NULL, session TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel_id, session));
INSERT INTO channels (name, created, last_live, last_seq, utterances, finals)
    VALUES ('lecture', 1.0, 2.0, 7, 1, 1);
INSERT INTO finals VALUES (1, 7, 0, 's0', 0.0, 1.5, 'Old words.', 'en', '[]', 0, 2.0);
"""


def test_a_store_from_before_speakers_is_upgraded_in_place(postgres: Postgres) -> None:
    import psycopg

    url = new_database(postgres)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA_V1)  # type: ignore[arg-type]
    store = open_store(url)
    table = (SpeakerEntry("S1", "Alice"),)
    store.write([dataclasses.replace(final(8, utterance=1), speaker="S1"),
                 Mark("lecture", 3.0, 9, speakers=table)])
    assert [(f.seq, f.speaker) for f in store.finals("lecture")] == [(7, None), (8, "S1")]
    store.close()
    again = open_store(url)  # a second node opening the upgraded store changes nothing
    position = again.position("lecture")
    assert position is not None and position.speakers == table
    assert again.voices() == []  # version 3's voices table came with the upgrade
    again.add_voice(StoredVoice("v_1", "Alice", 3.0, 2.5, b"\0" * 8))
    assert [v.id for v in again.voices()] == ["v_1"]
    again.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM captioncast_schema").fetchall() == [(3,)]


def test_an_unreachable_server_is_a_clear_error_at_open() -> None:
    with pytest.raises(StoreError, match=r"cannot open the transcript store postgresql://"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/none")


def test_postgres_stopped_mid_write_then_started_again_loses_nothing(
        postgres: Postgres) -> None:
    url = new_database(postgres)

    async def scenario() -> None:
        options = WriterOptions(retry_first_s=0.05, retry_max_s=0.5)
        async with AsyncStore(open_store(url), options) as store:
            accepted: list[int] = []
            seqs = itertools.count(1)

            async def speak(finals: int) -> None:
                # 16 streams' worth of finals, a few milliseconds apart.
                for _ in range(finals):
                    seq = next(seqs)
                    if store.put(final(seq, channel=f"room-{seq % 16}")):
                        accepted.append(seq)
                    await asyncio.sleep(0.002)

            await speak(200)
            await asyncio.to_thread(postgres.stop, "immediate")
            await speak(300)  # captions go on while the store is away
            deadline = asyncio.get_running_loop().time() + 30
            while store.health().status != "degraded":
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            assert store.health().queued > 0
            assert "postgresql" in (store.health().last_error or "")
            await asyncio.to_thread(postgres.start)
            await speak(100)
            assert await store.flush(timeout=60), store.health()
            health = store.health()
            assert (health.status, health.dropped, health.queued) == ("ok", 0, 0)
            stored = []
            for room in range(16):
                stored += [f.seq for f in await store.finals(f"room-{room}")]
            assert sorted(stored) == accepted == list(range(1, 601))
    asyncio.run(scenario())


def test_a_bounded_buffer_while_postgres_is_away_counts_its_overflow(
        postgres: Postgres) -> None:
    url = new_database(postgres)

    async def scenario() -> None:
        options = WriterOptions(max_queued=50, retry_first_s=0.05, retry_max_s=0.2)
        async with AsyncStore(open_store(url), options) as store:
            await asyncio.to_thread(postgres.stop, "immediate")
            try:
                results = [store.put(final(seq)) for seq in range(1, 81)]
            finally:
                await asyncio.to_thread(postgres.start)
            assert results == [True] * 50 + [False] * 30
            assert await store.flush(timeout=60), store.health()
            assert [f.seq for f in await store.finals("lecture")] == list(range(1, 51))
            assert store.health().dropped == 30
    asyncio.run(scenario())


def test_a_final_postgres_refuses_is_counted_and_the_rest_are_stored(
        postgres: Postgres) -> None:
    url = new_database(postgres)

    async def scenario() -> None:
        async with AsyncStore(open_store(url)) as store:
            store.put(final(1))
            store.put(final(2, text="a NUL \x00 byte, which text columns refuse"))
            store.put(final(3))
            assert await store.flush(timeout=30)
            assert [f.seq for f in await store.finals("lecture")] == [1, 3]
            health = store.health()
            assert (health.status, health.dropped, health.written) == ("ok", 1, 2)
    asyncio.run(scenario())
