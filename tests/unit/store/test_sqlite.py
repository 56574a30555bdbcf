"""The SQLite transcript store on real files: the shared contract, damaged files, a full
disk and a read-only file system."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from captioncast.protocol.events import SpeakerEntry
from captioncast.store import (
    AsyncStore,
    Mark,
    SqliteStore,
    StoredVoice,
    StoreError,
    WriterOptions,
    open_store,
)
from captioncast.store.sqlite import SCHEMA_VERSION
from tests.conftest import REPO
from tests.support.store_contract import MakeStore, StoreContract, final


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[MakeStore]:
    opened: list[SqliteStore] = []

    def make() -> SqliteStore:
        opened.append(SqliteStore(tmp_path / "data"))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


class TestSqliteStore(StoreContract):
    pass


def test_a_data_dir_holds_one_file_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "data"))
    store.write([final(1)])
    path = tmp_path / "data" / "transcripts.sqlite3"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()


# The schema a store had before speakers (version 1), as that server made it.
SCHEMA_V1 = """
CREATE TABLE channels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, last_live REAL NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
    utterances INTEGER NOT NULL DEFAULT 0, finals INTEGER NOT NULL DEFAULT 0,
    words INTEGER NOT NULL DEFAULT 0, duration REAL NOT NULL DEFAULT 0,
    speech REAL NOT NULL DEFAULT 0);
CREATE INDEX channels_last_live ON channels (last_live);
CREATE TABLE finals (channel_id INTEGER NOT NULL, seq INTEGER NOT NULL,
    utterance INTEGER NOT NULL, session TEXT NOT NULL, t_start REAL NOT NULL,
    t_end REAL NOT NULL, text TEXT NOT NULL, language TEXT NOT NULL, words TEXT NOT NULL,
    n_words INTEGER NOT NULL, received REAL NOT NULL,
    PRIMARY KEY (channel_id, seq)) WITHOUT ROWID;
CREATE INDEX finals_time ON finals (channel_id, t_end);
CREATE TABLE sessions (channel_id INTEGER NOT NULL, session TEXT NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY (channel_id, session)) WITHOUT ROWID;
INSERT INTO channels VALUES (1, 'lecture', 1.0, 2.0, 7, 1, 1, 2, 1.5, 1.5);
INSERT INTO finals VALUES (1, 7, 0, 's0', 0.0, 1.5, 'Old words.', 'en',
    '[["Old",0.0,0.5,0.9],["words.",0.5,1.5,0.9]]', 2, 2.0);
PRAGMA user_version = 1;
"""


def test_a_store_from_before_speakers_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_V1)
    store = SqliteStore(path)
    [old] = store.finals("lecture")
    assert (old.seq, old.text, old.speaker) == (7, "Old words.", None)
    table = (SpeakerEntry("S1", "Alice"),)
    store.write([dataclasses.replace(final(8, utterance=1), speaker="S1"),
                 Mark("lecture", 3.0, 9, speakers=table)])
    store.close()
    reopened = SqliteStore(path)
    assert [f.speaker for f in reopened.finals("lecture")] == [None, "S1"]
    position = reopened.position("lecture")
    assert position is not None and position.speakers == table and position.seq == 9
    # Version 3's voices table came with the upgrade.
    assert reopened.voices() == []
    reopened.add_voice(StoredVoice("v_1", "Alice", 3.0, 2.5, b"\0" * 8))
    assert [v.id for v in reopened.voices()] == ["v_1"]
    reopened.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_memory_store() -> None:
    store = open_store(":memory:")
    store.write([final(seq) for seq in range(1, 4)])
    assert [f.seq for f in store.finals("lecture", since=1)] == [2, 3]
    store.close()


def test_a_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.sqlite3"
    path.write_bytes(b"these are lecture notes, not a database\n" * 200)
    with pytest.raises(StoreError, match="cannot open the transcript store"):
        SqliteStore(path)
    assert path.read_bytes().startswith(b"these are lecture notes")  # left as it was


def test_a_damaged_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.sqlite3"
    store = SqliteStore(path)
    store.write([final(seq, text="word " * 200) for seq in range(1, 200)])
    store.close()
    with sqlite3.connect(path) as conn:  # the WAL into the file, so the damage is in it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    assert len(data) > 40_000
    data[8192:24576] = b"\x5a" * 16384  # pages 3 and 4 (of 4096 bytes) overwritten
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="cannot open the transcript store"):
        SqliteStore(path)


def test_another_programs_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(StoreError, match="not a captioncast store"):
        SqliteStore(path)


def test_a_newer_schema_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.sqlite3"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs of 512 KiB, which the test can fill, grow and make read-only."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


async def wait_degraded(store: AsyncStore, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while store.health().status != "degraded":
        assert asyncio.get_running_loop().time() < deadline, store.health()
        await asyncio.sleep(0.05)


def test_a_full_disk_degrades_and_keeps_the_finals_until_there_is_room(
        small_disk: Path) -> None:
    async def scenario() -> None:
        options = WriterOptions(retry_first_s=0.05, retry_max_s=0.2)
        async with AsyncStore(SqliteStore(small_disk), options) as store:
            long_text = "a long lecture sentence with many words in it " * 20
            accepted = 0
            for seq in range(1, 2001):
                accepted += store.put(final(seq, text=long_text))
                await asyncio.sleep(0)
                if store.health().status == "degraded":
                    break
            await wait_degraded(store)
            health = store.health()
            assert health.queued > 0 and health.last_error is not None
            assert "full" in health.last_error
            more = [final(seq, text="after the disk filled") for seq in range(seq + 1,
                                                                              seq + 51)]
            accepted += sum(store.put(f) for f in more)
            remount(small_disk, "size=64m")
            assert await store.flush(timeout=30)
            assert store.health().status == "ok" and store.health().dropped == 0
            assert len(await store.finals("lecture")) == accepted == store.health().written
    asyncio.run(scenario())


def test_a_read_only_file_system_degrades_and_writes_resume(small_disk: Path) -> None:
    # A file system cannot turn read-only under an open writer (the kernel says busy), so
    # the server starts on a read-only one, as after an fsck or a full-disk remount.
    seeded = SqliteStore(small_disk)
    seeded.write([final(1)])
    seeded.close()
    remount(small_disk, "ro")

    async def scenario() -> None:
        options = WriterOptions(retry_first_s=0.05, retry_max_s=0.2)
        async with AsyncStore(SqliteStore(small_disk), options) as store:
            for seq in range(2, 12):
                store.put(final(seq))
            await wait_degraded(store)
            health = store.health()
            assert health.queued == 10
            assert health.last_error is not None and "sqlite" in health.last_error
            assert [f.seq for f in await store.finals("lecture")] == [1]  # reads go on
            remount(small_disk, "rw")
            assert await store.flush(timeout=30)
            assert [f.seq for f in await store.finals("lecture")] == list(range(1, 12))
            assert store.health().status == "ok"
    asyncio.run(scenario())


WRITER = """
import asyncio, sys
from captioncast.store import AsyncStore, SqliteStore
from tests.support.store_contract import final

async def main():
    async with AsyncStore(SqliteStore(sys.argv[1])) as store:
        for seq in range(1, 100_000):
            if await store.write(final(seq), wait=5):
                print(seq, flush=True)  # what a viewer would have been sent

asyncio.run(main())
"""


def test_every_acknowledged_final_survives_sigkill(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "data")],
                               stdout=subprocess.PIPE, text=True,
                               cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                   filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    assert process.stdout is not None
    acknowledged = [int(process.stdout.readline()) for _ in range(300)]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    store = SqliteStore(tmp_path / "data")
    position = store.position("lecture")
    stored = [f.seq for f in store.finals("lecture")]
    assert position is not None and position.seq == stored[-1]
    assert stored[: len(acknowledged)] == acknowledged == list(range(1, 301))
    store.close()
