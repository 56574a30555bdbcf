"""Transcripts that survive a restart: every channel's finals in SQLite or PostgreSQL.

`open_store(where)` picks the engine; `AsyncStore` puts it behind one writer thread for the
event loop. Nothing here imports the transport or the protocol's event types.
"""

from __future__ import annotations

from pathlib import Path

from captioncast.store.model import (
    ChannelInfo,
    ChannelPage,
    Mark,
    Position,
    StoredFinal,
    StoredWord,
    StoreError,
    StoreHealth,
)
from captioncast.store.sqlite import SqliteStore
from captioncast.store.transcript_store import TranscriptStore
from captioncast.store.voices import StoredVoice
from captioncast.store.writer import AsyncStore, WriterOptions

__all__ = [
    "AsyncStore",
    "ChannelInfo",
    "ChannelPage",
    "Mark",
    "Position",
    "SqliteStore",
    "StoreError",
    "StoreHealth",
    "StoredFinal",
    "StoredVoice",
    "StoredWord",
    "TranscriptStore",
    "WriterOptions",
    "open_store",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(where: str | Path) -> TranscriptStore:
    """`postgresql://...` for PostgreSQL; otherwise a SQLite file, a data dir, or `:memory:`."""
    if isinstance(where, str) and where.startswith(POSTGRES_SCHEMES):
        from captioncast.store.postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore(where)
    return SqliteStore(where)
