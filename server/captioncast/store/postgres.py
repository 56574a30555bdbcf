"""The shared store for clusters: the same tables in PostgreSQL, through psycopg 3.

psycopg is imported when a store is opened, so that the server runs without it when no
`postgresql://` store is asked for (`pip install 'captioncast[postgres]'`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from captioncast.store.model import StoreError
from captioncast.store.transcript_store import SqlStore
from captioncast.store.voices import VOICES_TABLE

log = logging.getLogger("captioncast.store")

SCHEMA_VERSION = 3  # 2: speakers on finals, a channel's speaker table; 3: voices
CONNECT_TIMEOUT_S = 5  # an unreachable server fails the write, which is queued and retried
# Every statement is bounded so that a server that stops answering fails, not hangs.
STATEMENT_TIMEOUT_MS = 30_000
# Two nodes starting together must not both create the tables.
SCHEMA_LOCK = 0x63617074  # "capt"

SCHEMA = """
CREATE TABLE IF NOT EXISTS captioncast_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created DOUBLE PRECISION NOT NULL,
    last_live DOUBLE PRECISION NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    utterances BIGINT NOT NULL DEFAULT 0,
    finals BIGINT NOT NULL DEFAULT 0,
    words BIGINT NOT NULL DEFAULT 0,
    duration DOUBLE PRECISION NOT NULL DEFAULT 0,
    speech DOUBLE PRECISION NOT NULL DEFAULT 0,
    speakers TEXT,
    speakers_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS channels_last_live ON channels (last_live);
CREATE TABLE IF NOT EXISTS finals (
    channel_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    utterance BIGINT NOT NULL,
    session TEXT NOT NULL,
    t_start DOUBLE PRECISION NOT NULL,
    t_end DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    language TEXT NOT NULL,
    words TEXT NOT NULL,
    n_words INTEGER NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    speaker TEXT,
    speaker_name TEXT,
    source_channel INTEGER,
    PRIMARY KEY (channel_id, seq)
);
CREATE INDEX IF NOT EXISTS finals_time ON finals (channel_id, t_end);
CREATE TABLE IF NOT EXISTS sessions (
    channel_id BIGINT NOT NULL,
    session TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel_id, session)
);
""" + VOICES_TABLE.format(blob="BYTEA")  # version 3: enrolled voices (store/voices.py)

# A store made before speakers (version 1) gains their columns; IF NOT EXISTS makes it
# safe for two nodes, and a no-op on tables SCHEMA has just made (as SCHEMA's own
# `voices` table is on a version 2 store: version 3 needs nothing more).
MIGRATION = """
ALTER TABLE finals ADD COLUMN IF NOT EXISTS speaker TEXT,
    ADD COLUMN IF NOT EXISTS speaker_name TEXT,
    ADD COLUMN IF NOT EXISTS source_channel INTEGER;
ALTER TABLE channels ADD COLUMN IF NOT EXISTS speakers TEXT,
    ADD COLUMN IF NOT EXISTS speakers_seq BIGINT NOT NULL DEFAULT 0;
"""


class PostgresStore(SqlStore):
    """Transcripts in the database at `url` (`postgresql://user@host:port/db`).

    A lost connection fails the call in progress (StoreError, transient) and is made again
    on the next one, so the writer's retries resume by themselves when the server is back.
    """

    backend = "postgresql"
    placeholder = "%s"
    greatest = "greatest"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("a postgresql:// store needs psycopg: "
                             "pip install 'captioncast[postgres]'", transient=False) from exc
        self._psycopg = psycopg
        self.url = url
        self._writer: Any = None
        self._reader: Any = None
        try:
            conn = self._connect(autocommit=False)
            self._prepare(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the transcript store {self._where()}: {exc}",
                             transient=False) from exc
        self._writer = conn

    def _where(self) -> str:
        # The address without its password, for logs and errors.
        info = self._psycopg.conninfo.conninfo_to_dict(self.url)
        host, port, db = (info.get(k, "") for k in ("host", "port", "dbname"))
        return f"postgresql://{host}:{port}/{db}"

    def _connect(self, autocommit: bool) -> Any:
        return self._psycopg.connect(
            self.url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")

    def _prepare(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cur.execute(SCHEMA)
            cur.execute("SELECT max(version) FROM captioncast_schema")
            version = cur.fetchone()[0]
            if version is None:
                cur.execute("INSERT INTO captioncast_schema VALUES (%s)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                conn.rollback()
                raise StoreError(f"{self._where()}: schema version {version} is newer than "
                                 f"this server's ({SCHEMA_VERSION})", transient=False)
            elif version < SCHEMA_VERSION:
                cur.execute(MIGRATION)
                cur.execute("UPDATE captioncast_schema SET version = %s", (SCHEMA_VERSION,))
                log.info("event=store_migrated where=%s from=%d to=%d", self._where(),
                         version, SCHEMA_VERSION)
        conn.commit()

    def _write_connection(self) -> Any:
        with self._opened:
            if self._writer is None or self._writer.closed:
                self._writer = self._connect(autocommit=False)
            return self._writer

    def _read_connection(self) -> Any:
        with self._opened:
            if self._reader is None or self._reader.closed:
                self._reader = self._connect(autocommit=True)
            return self._reader

    def _drop_connection(self, conn: Any) -> None:
        # Kept unless broken: an error in a statement leaves the connection usable.
        if not conn.closed and not conn.broken:
            return
        with self._opened:
            if conn is self._writer:
                self._writer = None
            elif conn is self._reader:
                self._reader = None
        with contextlib.suppress(self._psycopg.Error):
            conn.close()

    def _error(self, exc: Exception) -> Exception:
        psycopg = self._psycopg
        if isinstance(exc, psycopg.Error):
            permanent = isinstance(exc, psycopg.DataError | psycopg.IntegrityError
                                   | psycopg.ProgrammingError)
            return StoreError(f"postgresql {self._where()}: {exc}", transient=not permanent)
        return exc
