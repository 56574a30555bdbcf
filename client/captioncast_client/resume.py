"""What a client keeps to survive a dropped connection: audio to resend, where events stand.

No I/O. `session.CaptionStream` uses these when it reconnects: it resumes the session with
`since=` the last seq it read, resends the audio after the server's `audio_received`,
and, when the session is gone (expired, server restarted), starts a new one from the end
of the last final it got, shifting the new session's clock and numbers so that its
captions continue the old ones.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from captioncast.protocol.backoff import Backoff
from captioncast.protocol.events import End, Event, Final, Partial, Ready


class SentAudio:
    """The stream's audio by absolute byte offset: what was read, down to what may be resent.

    Bytes before `confirmed` (the end of the last final, which the server surely had) are
    forgotten; so are sent bytes more than `max_held` behind the furthest sent. Unsent
    bytes are never forgotten: the reader waits (`backlog`) instead.
    """

    def __init__(self, max_held: int) -> None:
        self.max_held = max_held
        self._chunks: deque[tuple[int, bytes]] = deque()
        self.base = 0  # offset of the first byte held
        self.end = 0  # offset after the last byte read
        self.sent = 0  # offset after the last byte sent on the current connection
        self.sent_ever = 0  # the furthest offset ever sent
        self.confirmed = 0

    def add(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append((self.end, chunk))
            self.end += len(chunk)

    @property
    def backlog(self) -> int:
        """Bytes read but not yet sent."""
        return self.end - self.sent

    @property
    def held(self) -> int:
        return self.end - self.base

    def next_chunk(self) -> bytes | None:
        """The next bytes to send after `sent` (a whole chunk or its remainder)."""
        for offset, chunk in self._chunks:
            if offset + len(chunk) > self.sent:
                return chunk[self.sent - offset:] if offset < self.sent else chunk
        return None

    def mark_sent(self, size: int) -> None:
        self.sent += size
        self.sent_ever = max(self.sent_ever, self.sent)
        self._trim()

    def rewind(self, offset: int) -> int:
        """Send again from `offset`; returns the offset actually used (what is still held)."""
        self.sent = min(max(offset, self.base), self.end)
        return self.sent

    def confirm(self, offset: int) -> None:
        """The server has everything before `offset` (a final ended there)."""
        self.confirmed = max(self.confirmed, min(offset, self.sent_ever))
        self._trim()

    def _trim(self) -> None:
        # Unsent bytes stay whatever max_held says: the reader is held back instead.
        keep_from = max(self.confirmed, self.sent_ever - self.max_held)
        while self._chunks:
            offset, chunk = self._chunks[0]
            if offset + len(chunk) > keep_from:
                break
            self._chunks.popleft()
            self.base = offset + len(chunk)


def reconnect_backoff() -> Backoff:
    """The client's resume delays: from 0.25 s to 8 s, each a random half to whole of its
    nominal value, so that clients cut off together do not come back in step."""
    return Backoff(first_s=0.25, max_s=8.0, jitter=(0.5, 1.0))


class EventContinuity:
    """Events of one or more server sessions as one gap-free stream.

    Within a session, replays overlap what was already read: events at or below the
    last seq are dropped. A later session (the first one was lost) is shifted to
    continue the seq, utterance numbers and audio clock where the previous one stopped.
    """

    def __init__(self) -> None:
        self.last_seq = 0  # of the current server session, as the server numbers it
        self.out_seq = 0  # of the events handed on
        self.next_utterance = 0
        self.last_final_end = 0.0  # audio seconds, on the output clock
        self._seq_shift = 0
        self._utterance_shift = 0
        self._time_shift = 0.0

    def new_session(self, restart_at: float) -> None:
        """A new server session, fed from audio second `restart_at` of the stream."""
        self._seq_shift = self.out_seq - 1  # its ready (seq 1) is not handed on
        self._utterance_shift = self.next_utterance
        self._time_shift = restart_at
        self.last_seq = 1

    def accept(self, event: Event) -> Event | None:
        """The event as handed on, or None for a repeat (or a ready)."""
        if isinstance(event, Ready) or event.seq <= self.last_seq:
            return None
        self.last_seq = event.seq
        out = event.with_seq(event.seq + self._seq_shift)
        if self._time_shift or self._utterance_shift:
            out = self._shifted(out)
        self.out_seq = out.seq
        if isinstance(out, Final):
            self.next_utterance = out.utterance + 1
            self.last_final_end = max(self.last_final_end, out.end)
        return out

    def _shifted(self, event: Event) -> Event:
        t, shift = self._time_shift, self._utterance_shift
        if isinstance(event, Partial):
            return replace(event, utterance=event.utterance + shift,
                           start=_t(event.start + t), end=_t(event.end + t))
        if isinstance(event, Final):
            return replace(event, utterance=event.utterance + shift, start=_t(event.start + t),
                           end=_t(event.end + t),
                           words=tuple(replace(w, start=_t(w.start + t), end=_t(w.end + t))
                                       for w in event.words))
        if isinstance(event, End):
            return replace(event, duration=_t(event.duration + t),
                           utterances=event.utterances + shift)
        return event


def _t(seconds: float) -> float:
    return round(seconds, 3)
