"""Enrolled voices ("known voices") in the transcript store: a name and its voiceprint.

A voiceprint is personal data: it is stored only here, as float32 bytes, never logged,
and `delete_voice` removes it for good. The table came with schema version 3; both
engines share these queries (`SqlStore` inherits them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

# The table, for a new store and for the migration from version 2, in both engines' SQL
# (`{blob}`: BLOB in SQLite, BYTEA in PostgreSQL).
VOICES_TABLE = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    embedding {blob} NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    seconds DOUBLE PRECISION NOT NULL
);
"""


@dataclass(frozen=True)
class StoredVoice:
    """One enrolled voice; `embedding` is its voiceprint as little-endian float32 bytes."""

    id: str
    name: str
    created: float  # wall clock
    seconds: float  # of voice in the sample it was made from
    embedding: bytes = field(repr=False)  # personal data: kept out of reprs and logs


class VoiceQueries:
    """The voices' queries, on the connections and transactions of `SqlStore`."""

    def _sql(self, query: str) -> str:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def add_voice(self, voice: StoredVoice) -> None:
        with self._writing() as cur:
            cur.execute(self._sql(
                "INSERT INTO voices (id, name, embedding, created, seconds) "
                "VALUES (?, ?, ?, ?, ?)"),
                (voice.id, voice.name, voice.embedding, voice.created, voice.seconds))

    def voices(self) -> list[StoredVoice]:
        """Every enrolled voice, oldest first."""
        with self._reading() as cur:
            cur.execute(self._sql(
                "SELECT id, name, embedding, created, seconds FROM voices ORDER BY created, id"))
            rows = cur.fetchall()
        return list(_voices(rows))

    def delete_voice(self, voice_id: str) -> bool:
        """Remove a voice and its voiceprint; False if there was none."""
        with self._writing() as cur:
            cur.execute(self._sql("DELETE FROM voices WHERE id = ?"), (voice_id,))
            return bool(cur.rowcount)


def _voices(rows: list[Any]) -> Iterator[StoredVoice]:
    for voice_id, name, embedding, created, seconds in rows:
        yield StoredVoice(str(voice_id), str(name), float(created), float(seconds),
                          bytes(embedding))
