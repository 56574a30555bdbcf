"""The transcript store's interface, and the SQL both engines share behind it.

Blocking by design: one writer thread (`AsyncStore`) and worker threads call it, never the
event loop. Writes are idempotent on (channel, seq), so a batch retried after a failure
that was in fact committed, or a final relayed by two nodes, is stored once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from captioncast.store.model import (
    ChannelInfo,
    ChannelPage,
    Mark,
    Position,
    StoredFinal,
    speakers_from_json,
    speakers_to_json,
    words_from_json,
    words_to_json,
)
from captioncast.store.voices import StoredVoice, VoiceQueries

DAY_S = 86_400.0
MAX_PAGE = 1000  # channels in one page of a listing


class TranscriptStore(Protocol):
    """Every final of every channel, and what the server needs to know of each channel."""

    backend: str

    def write(self, items: Sequence[StoredFinal | Mark]) -> None:
        """Store finals and marks in one transaction; StoreError if none of it was stored."""

    def finals(self, channel: str, *, since: int = 0, start: float | None = None,
               end: float | None = None, limit: int | None = None) -> list[StoredFinal]:
        """A channel's finals after seq `since` that overlap [start, end) of its timeline,
        by seq."""

    def position(self, channel: str) -> Position | None:
        """Where the channel's seq, utterance numbers and clock stand; None if unknown."""

    def channel(self, name: str) -> ChannelInfo | None: ...

    def channels(self, *, limit: int = 100, after: str | None = None) -> ChannelPage:
        """Channels by name, `limit` at a time, from the one after `after`."""

    def delete(self, name: str) -> bool:
        """Remove a channel and its transcript; False if there was none."""

    def delete_older_than(self, days: float, now: float | None = None) -> list[str]:
        """Remove the channels last live more than `days` ago; their names."""

    def add_voice(self, voice: StoredVoice) -> None:
        """Enroll a voice (store/voices.py)."""

    def voices(self) -> list[StoredVoice]:
        """Every enrolled voice, oldest first."""

    def delete_voice(self, voice_id: str) -> bool:
        """Remove a voice and its voiceprint for good; False if there was none."""

    def close(self) -> None: ...


FINAL_COLUMNS = ("seq, utterance, session, t_start, t_end, text, language, words, received, "
                 "speaker, speaker_name, source_channel")


class SqlStore(VoiceQueries):
    """The queries of both engines, written once with `?` placeholders and `{greatest}`."""

    backend = "sql"
    placeholder = "?"
    greatest = "max"

    def __init__(self) -> None:
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._opened = threading.Lock()  # (re)opening a connection
        self._writer: Any = None
        self._reader: Any = None

    # Engine hooks
    def _write_connection(self) -> Any:
        raise NotImplementedError

    def _read_connection(self) -> Any:
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        """Open a write transaction (psycopg opens one by itself)."""

    def _error(self, exc: Exception) -> Exception:
        """The engine's exception as a StoreError, or unchanged if it is not the engine's."""
        return exc

    def _drop_connection(self, conn: Any) -> None:
        """Forget a connection that failed, so the next call makes a new one."""

    def _sql(self, query: str) -> str:
        query = query.replace("{greatest}", self.greatest)
        return query if self.placeholder == "?" else query.replace("?", self.placeholder)

    def _connection(self, get: Callable[[], Any]) -> Any:
        try:
            return get()
        except Exception as exc:  # the server is away: transient, the write is retried
            raise self._error(exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self._read_lock:
            conn = self._connection(self._read_connection)
            try:
                cur = conn.cursor()
                yield cur
                conn.commit()
            except Exception as exc:
                self._drop_connection(conn)
                raise self._error(exc) from exc

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        with self._write_lock:
            conn = self._connection(self._write_connection)
            try:
                self._begin(conn)
                cur = conn.cursor()
                yield cur
                conn.commit()
            except Exception as exc:
                with contextlib.suppress(Exception):  # the connection is gone: dropped below
                    conn.rollback()
                self._drop_connection(conn)
                raise self._error(exc) from exc

    # Writes
    def write(self, items: Sequence[StoredFinal | Mark]) -> None:
        by_channel: dict[str, list[StoredFinal | Mark]] = defaultdict(list)
        for item in items:
            by_channel[item.channel].append(item)
        with self._writing() as cur:
            # Channels in one order on every node: two batches never wait on each other's
            # channel rows in a cycle (a deadlock, in Postgres).
            for name in sorted(by_channel):
                self._write_channel(cur, name, by_channel[name])

    def _write_channel(self, cur: Any, name: str, items: list[StoredFinal | Mark]) -> None:
        finals = [i for i in items if isinstance(i, StoredFinal)]
        marks = [i for i in items if isinstance(i, Mark)]
        times = [f.received for f in finals] + [m.at for m in marks]
        cur.execute(self._sql(
            "INSERT INTO channels (name, created, last_live) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET "
            "last_live = {greatest}(channels.last_live, excluded.last_live) RETURNING id"),
            (name, min(times), max(times)))
        channel_id = int(cur.fetchone()[0])
        inserted = 0
        if finals:
            cur.executemany(self._sql(
                f"INSERT INTO finals (channel_id, {FINAL_COLUMNS}, n_words) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (channel_id, seq) DO NOTHING"),
                [(channel_id, f.seq, f.utterance, f.session, f.start, f.end, f.text,
                  f.language, words_to_json(f.words), f.received, f.speaker, f.speaker_name,
                  f.source_channel, len(f.words))
                 for f in finals])
            inserted = cur.rowcount
        seqs = [f.seq for f in finals] + [m.seq for m in marks]
        utterances = max((f.utterance + 1 for f in finals), default=0)
        end = max((f.end for f in finals), default=0.0)
        if not finals or inserted == len(finals):
            cur.execute(self._sql(
                "UPDATE channels SET finals = finals + ?, words = words + ?, "
                "speech = speech + ?, duration = {greatest}(duration, ?), "
                "utterances = {greatest}(utterances, ?), last_seq = {greatest}(last_seq, ?) "
                "WHERE id = ?"),
                (len(finals), sum(len(f.words) for f in finals),
                 sum(max(0.0, f.end - f.start) for f in finals), end, utterances,
                 max(seqs), channel_id))
        else:  # some were stored before (a retry, a relay): count from what is there
            cur.execute(self._sql(
                "UPDATE channels SET "
                "finals = (SELECT count(*) FROM finals WHERE channel_id = ?), "
                "words = (SELECT coalesce(sum(n_words), 0) FROM finals WHERE channel_id = ?), "
                "speech = (SELECT coalesce(sum(t_end - t_start), 0) FROM finals "
                "WHERE channel_id = ?), "
                "duration = {greatest}(duration, ?), utterances = {greatest}(utterances, ?), "
                "last_seq = {greatest}(last_seq, ?) WHERE id = ?"),
                (channel_id, channel_id, channel_id, end, utterances, max(seqs), channel_id))
        tables = [m for m in marks if m.speakers is not None]
        if tables:
            # Only a newer table replaces the kept one: a relayed or retried older one may
            # arrive after it.
            newest = max(tables, key=lambda m: m.seq)
            assert newest.speakers is not None
            cur.execute(self._sql(
                "UPDATE channels SET speakers = ?, speakers_seq = ? "
                "WHERE id = ? AND speakers_seq <= ?"),
                (speakers_to_json(newest.speakers), newest.seq, channel_id, newest.seq))
        spoke: dict[str, tuple[float, float]] = {}
        for item in items:
            session, at = ((item.session, item.received) if isinstance(item, StoredFinal)
                           else (item.session, item.at))
            if session:
                first, last = spoke.get(session, (at, at))
                spoke[session] = (min(first, at), max(last, at))
        if spoke:
            cur.executemany(self._sql(
                "INSERT INTO sessions (channel_id, session, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id, session) DO UPDATE SET "
                "last_seen = {greatest}(sessions.last_seen, excluded.last_seen)"),
                [(channel_id, s, first, last) for s, (first, last) in spoke.items()])

    def delete(self, name: str) -> bool:
        with self._writing() as cur:
            return self._delete(cur, name)

    def _delete(self, cur: Any, name: str) -> bool:
        cur.execute(self._sql("SELECT id FROM channels WHERE name = ?"), (name,))
        row = cur.fetchone()
        if row is None:
            return False
        for table, column in (("finals", "channel_id"), ("sessions", "channel_id"),
                              ("channels", "id")):
            cur.execute(self._sql(f"DELETE FROM {table} WHERE {column} = ?"), (row[0],))
        return True

    def delete_older_than(self, days: float, now: float | None = None) -> list[str]:
        cutoff = (time.time() if now is None else now) - days * DAY_S
        with self._writing() as cur:
            cur.execute(self._sql("SELECT name FROM channels WHERE last_live < ? ORDER BY name"),
                        (cutoff,))
            names = [str(r[0]) for r in cur.fetchall()]
            for name in names:
                self._delete(cur, name)
        return names

    # Reads
    def finals(self, channel: str, *, since: int = 0, start: float | None = None,
               end: float | None = None, limit: int | None = None) -> list[StoredFinal]:
        query = (f"SELECT {FINAL_COLUMNS} FROM finals "
                 "WHERE channel_id = (SELECT id FROM channels WHERE name = ?) AND seq > ?")
        args: list[Any] = [channel, since]
        if start is not None:
            query += " AND t_end > ?"
            args.append(start)
        if end is not None:
            query += " AND t_start < ?"
            args.append(end)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT ?"
            args.append(max(0, limit))
        with self._reading() as cur:
            cur.execute(self._sql(query), args)
            rows = cur.fetchall()
        return [StoredFinal(channel=channel, seq=int(seq), utterance=int(utt),
                            session=str(session), start=float(t0), end=float(t1),
                            text=str(text), language=str(lang),
                            words=words_from_json(words, speaker), received=float(received),
                            speaker=speaker, speaker_name=name,
                            source_channel=None if source is None else int(source))
                for (seq, utt, session, t0, t1, text, lang, words, received, speaker, name,
                     source) in rows]

    def position(self, channel: str) -> Position | None:
        with self._reading() as cur:
            cur.execute(self._sql(
                "SELECT last_seq, utterances, duration, speakers, speakers_seq FROM channels "
                "WHERE name = ?"), (channel,))
            row = cur.fetchone()
        if row is None:
            return None
        return Position(int(row[0]), int(row[1]), float(row[2]),
                        speakers=speakers_from_json(row[3]), speakers_seq=int(row[4]))

    _INFO = ("SELECT id, name, created, last_live, finals, words, duration, speech, last_seq "
             "FROM channels")

    def channel(self, name: str) -> ChannelInfo | None:
        with self._reading() as cur:
            cur.execute(self._sql(self._INFO + " WHERE name = ?"), (name,))
            infos = self._infos(cur, cur.fetchall())
        return infos[0] if infos else None

    def channels(self, *, limit: int = 100, after: str | None = None) -> ChannelPage:
        limit = max(1, min(limit, MAX_PAGE))
        with self._reading() as cur:
            # One more than asked: whether there is a next page, without counting them all.
            cur.execute(self._sql(self._INFO + " WHERE name > ? ORDER BY name LIMIT ?"),
                        (after or "", limit + 1))
            rows = cur.fetchall()
            infos = self._infos(cur, rows[:limit])
        return ChannelPage(tuple(infos), infos[-1].name if len(rows) > limit else None)

    def _infos(self, cur: Any, rows: list[Any]) -> list[ChannelInfo]:
        infos = []
        for cid, name, created, last_live, finals, words, duration, speech, last_seq in rows:
            cur.execute(self._sql("SELECT session FROM sessions WHERE channel_id = ? "
                                  "ORDER BY first_seen, session"), (cid,))
            sessions = tuple(str(r[0]) for r in cur.fetchall())
            infos.append(ChannelInfo(str(name), float(created), float(last_live), sessions,
                                     int(finals), int(words), float(duration), float(speech),
                                     int(last_seq)))
        return infos

    def close(self) -> None:
        with self._write_lock, self._read_lock, self._opened:
            for conn in (self._reader, self._writer):
                if conn is not None:
                    conn.close()
            self._reader = self._writer = None
