"""The embedded store: one SQLite file in WAL mode (or `:memory:`), standard library only."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captioncast.store.model import Mark, StoredFinal, StoreError
from captioncast.store.transcript_store import SqlStore
from captioncast.store.voices import VOICES_TABLE

log = logging.getLogger("captioncast.store")

SCHEMA_VERSION = 3  # 2: speakers on finals, a channel's speaker table; 3: voices
FILE_NAME = "transcripts.sqlite3"
# A write that finds the file locked by another process waits this long, not forever.
BUSY_TIMEOUT_S = 5.0

SCHEMA = """
CREATE TABLE channels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_live REAL NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    utterances INTEGER NOT NULL DEFAULT 0,
    finals INTEGER NOT NULL DEFAULT 0,
    words INTEGER NOT NULL DEFAULT 0,
    duration REAL NOT NULL DEFAULT 0,
    speech REAL NOT NULL DEFAULT 0,
    speakers TEXT,
    speakers_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX channels_last_live ON channels (last_live);
CREATE TABLE finals (
    channel_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    utterance INTEGER NOT NULL,
    session TEXT NOT NULL,
    t_start REAL NOT NULL,
    t_end REAL NOT NULL,
    text TEXT NOT NULL,
    language TEXT NOT NULL,
    words TEXT NOT NULL,
    n_words INTEGER NOT NULL,
    received REAL NOT NULL,
    speaker TEXT,
    speaker_name TEXT,
    source_channel INTEGER,
    PRIMARY KEY (channel_id, seq)
) WITHOUT ROWID;
CREATE INDEX finals_time ON finals (channel_id, t_end);
CREATE TABLE sessions (
    channel_id INTEGER NOT NULL,
    session TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (channel_id, session)
) WITHOUT ROWID;
""" + VOICES_TABLE.format(blob="BLOB")

# Schema version N-1 to N, each in the transaction that sets the version: a store made
# before speakers gains their (nullable) columns and keeps every row it had.
MIGRATIONS = {
    2: """
ALTER TABLE finals ADD COLUMN speaker TEXT;
ALTER TABLE finals ADD COLUMN speaker_name TEXT;
ALTER TABLE finals ADD COLUMN source_channel INTEGER;
ALTER TABLE channels ADD COLUMN speakers TEXT;
ALTER TABLE channels ADD COLUMN speakers_seq INTEGER NOT NULL DEFAULT 0;
""",
    3: VOICES_TABLE.format(blob="BLOB"),  # enrolled voices (store/voices.py)
}


def _transient(exc: sqlite3.Error) -> bool:
    # A full disk, a read-only file, a lock held elsewhere, an I/O error may pass; a value
    # the schema refuses will not.
    code = getattr(exc, "sqlite_errorcode", None)
    permanent = {sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG}
    return code not in permanent and not isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError)


class SqliteStore(SqlStore):
    """Transcripts in `path`, or in memory (`:memory:`).

    `path` is a file, or a data dir (one that exists, or a name without a suffix) that gets
    `transcripts.sqlite3`.

    Opening checks the file: one that is not a database, is damaged, or has a newer schema
    is a StoreError, never an empty store in its place.
    """

    backend = "sqlite"

    def __init__(self, path: str | Path, *, check: bool = True) -> None:
        super().__init__()
        self.memory = str(path) == ":memory:"
        if not self.memory:
            path = Path(path)
            if path.is_dir() or (not path.exists() and not path.suffix):
                path = path / FILE_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        if self.memory:  # one connection: a read must not commit half a write
            self._read_lock = self._write_lock = threading.RLock()  # type: ignore[assignment]
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._immutable_reads = False
        try:
            self._writer = self._open(check)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the transcript store {self.path}: {exc}",
                             transient=False) from exc

    def _open(self, check: bool) -> sqlite3.Connection | None:
        """The checked write connection; None when the file can only be read for now."""
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            self._prepare(conn, check)
            return conn
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            if not self._read_only_fs():
                raise
            # Served read-only and reported degraded: writes queue and retry until the
            # file system is writable again.
            log.warning("event=store_read_only path=%s error=%r", self.path, str(exc))
            self._immutable_reads = True
            conn = self._connect(read_only=True)
            try:
                self._prepare(conn, check, read_only=True)
            finally:
                conn.close()
            return None

    def _read_only_fs(self) -> bool:
        where = Path(self.path)
        if not where.exists():
            return False
        return bool(os.statvfs(where.parent).f_flag & os.ST_RDONLY) or not os.access(
            where, os.W_OK)

    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE), so a write
        # takes the lock before reading and never fails half-way on a lock upgrade.
        # Read-only connections open as such: a WAL file on a read-only file system can be
        # read only by a connection that never asks to write.
        target, uri = self.path, False
        if read_only and not self.memory:
            target, uri = f"file:{urllib.parse.quote(self.path)}?mode=ro", True
            if self._immutable_reads:  # no -shm can be made: nobody can write it either
                target += "&immutable=1"
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False, uri=uri)
        conn.execute("PRAGMA foreign_keys = OFF")
        return conn

    def _prepare(self, conn: sqlite3.Connection, check: bool, read_only: bool = False) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if check and not self.memory:
            result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if result != ["ok"]:
                raise sqlite3.DatabaseError("damaged: " + "; ".join(map(str, result[:5])))
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this server's ({SCHEMA_VERSION})")
        if version == 0 and read_only:
            raise sqlite3.DatabaseError("a new store on a read-only file system")
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise sqlite3.DatabaseError("not a captioncast store (tables without a version)")
            conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif version < SCHEMA_VERSION and read_only:
            raise sqlite3.DatabaseError(f"schema version {version} needs an upgrade, "
                                        "and the file system is read-only")
        elif version < SCHEMA_VERSION:
            steps = "".join(MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1))
            conn.executescript(f"BEGIN IMMEDIATE; {steps} "
                               f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            log.info("event=store_migrated path=%s from=%d to=%d", self.path, version,
                     SCHEMA_VERSION)
        if not self.memory and not read_only:
            try:
                # WAL: readers never wait for the writer; NORMAL: a commit survives the
                # process being killed (not a power cut), at a fraction of FULL's fsyncs.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.OperationalError as exc:  # read-only: reads work, writes retry
                log.warning("event=store_open_degraded path=%s error=%r", self.path, str(exc))

    def _write_connection(self) -> sqlite3.Connection:
        with self._opened:
            if self._writer is None:
                self._writer = self._connect()
            return self._writer

    def _read_connection(self) -> sqlite3.Connection:
        if self.memory:  # one in-memory database per connection: share the writer's
            return self._write_connection()
        with self._opened:
            if self._reader is None:
                self._reader = self._connect(read_only=True)
            return self._reader

    def write(self, items: Sequence[StoredFinal | Mark]) -> None:
        super().write(items)
        if self._immutable_reads:  # writable again: reads must see the writes from now on
            with self._read_lock:
                self._immutable_reads = False
                if self._reader is not None:
                    self._drop_connection(self._reader)

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _drop_connection(self, conn: sqlite3.Connection) -> None:
        if self.memory:
            return  # closing it would lose the database
        with self._opened:
            if conn is self._writer:
                self._writer = None
            elif conn is self._reader:
                self._reader = None
            else:
                return
        # A read-only file stays read-only on the connection that opened it: reopen.
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def _error(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            return StoreError(f"sqlite {self.path}: {exc}", transient=_transient(exc))
        return exc
