"""A channel: one speaker's captions renumbered for many viewers, with replay and backlog rules.

I/O-free. The transport owns sockets and wake-ups; this module decides what a channel
remembers, what a late viewer is replayed, and what a slow viewer may lose.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from captioncast.protocol.captions import Cue, split_final
from captioncast.protocol.events import End, Event, Final, Partial, Sequencer, Speakers, Word


@dataclass(frozen=True)
class ChannelOptions:
    history: int = 1000  # finals a viewer's `since` can still replay
    viewer_backlog: int = 256  # finals queued for one viewer before it is cut off
    max_cues: int = 100_000  # for the live caption files: some 50 hours of speech, ~20 MB
    max_channels: int = 1000  # channels a server keeps; unused ones are forgotten oldest first


def _shift_words(words: Iterable[Word], offset: float) -> tuple[Word, ...]:
    return tuple(dataclasses.replace(w, start=w.start + offset, end=w.end + offset)
                 for w in words)


class ChannelLog:
    """The channel's own event stream: its `seq`, its clock, its utterance numbers.

    Several sessions can speak on one channel one after another (a show that reconnects);
    each continues the channel's clock and utterance numbering where the previous ended,
    so caption files and overlays see one continuous timeline.
    """

    def __init__(self, name: str, options: ChannelOptions | None = None) -> None:
        self.name = name
        self.options = options or ChannelOptions()
        self._seq = Sequencer()
        self._history: deque[Event] = deque(maxlen=self.options.history)
        # Caption files need every final's text and timing, not its words: keep cues only.
        self.cues: deque[Cue] = deque(maxlen=self.options.max_cues)
        self.partial: Partial | None = None
        self.speakers: Speakers | None = None  # the newest table: every late viewer gets it
        self.live = False
        self._time_offset = 0.0
        self._utterance_offset = 0
        self._session_end = 0.0  # the furthest audio time the current session reached
        self._session_utterances = 0
        self.remote_live = False  # a speaker on another node holds the channel
        self._remote_end = 0.0
        self._remote_utterances = 0

    @property
    def last_seq(self) -> int:
        return self._seq.last

    @property
    def utterances(self) -> int:
        return self._utterance_offset + self._session_utterances

    @property
    def duration(self) -> float:
        return self._time_offset + self._session_end

    @property
    def first_held(self) -> int:
        """The lowest seq that `replay` still holds; anything before it is in the store."""
        return self._history[0].seq if self._history else self._seq.last + 1

    def continue_from(self, seq: int, utterances: int, end: float,
                      speakers: Speakers | None = None) -> None:
        """A channel known before this process (the store says where it stood): its
        numbering and clock go on from there, so a viewer's `since` keeps its meaning,
        and its speaker table too, so earlier finals keep their names."""
        if speakers is not None and (self.speakers is None
                                     or self.speakers.seq < speakers.seq):
            self.speakers = speakers
        self._seq.last = max(self._seq.last, seq)
        self._utterance_offset = max(self._utterance_offset, utterances)
        self._time_offset = max(self._time_offset, end)

    def begin(self) -> None:
        # A speaker here after one on another node continues that node's clock and numbers.
        self._time_offset = max(self._time_offset, self._remote_end)
        self._utterance_offset = max(self._utterance_offset, self._remote_utterances)
        self.live = True
        self._session_end = 0.0
        self._session_utterances = 0

    def add(self, event: Event) -> Event | None:
        """Renumber a session's event for the channel; None for events viewers never see."""
        if isinstance(event, Partial):
            shifted: Event = dataclasses.replace(
                event, seq=self._seq.next(), utterance=event.utterance + self._utterance_offset,
                start=event.start + self._time_offset, end=event.end + self._time_offset,
            )
            self.partial = shifted  # type: ignore[assignment]
            self._session_end = max(self._session_end, event.end)
            return shifted
        if isinstance(event, Final):
            final = dataclasses.replace(
                event, seq=self._seq.next(), utterance=event.utterance + self._utterance_offset,
                start=event.start + self._time_offset, end=event.end + self._time_offset,
                words=_shift_words(event.words, self._time_offset),
            )
            if self.partial is not None and self.partial.utterance <= final.utterance:
                self.partial = None
            self._session_end = max(self._session_end, event.end)
            self._session_utterances = max(self._session_utterances, event.utterance + 1)
            self._history.append(final)
            self.cues.extend(split_final(final))
            return final
        if isinstance(event, Speakers):
            self.speakers = dataclasses.replace(event, seq=self._seq.next())
            return self.speakers
        return None  # ready and error belong to the speaker's own connection

    def end(self, duration: float | None = None) -> End:
        """The speaker's session is over; the next one continues after it."""
        if duration is not None:
            self._session_end = max(self._session_end, duration)
        event = End(self._seq.next(), duration=self.duration, utterances=self.utterances)
        self._history.append(event)
        self._time_offset = self.duration
        self._utterance_offset = self.utterances
        self._session_end = 0.0
        self._session_utterances = 0
        self.partial = None
        self.live = False
        return event

    def relay(self, event: Event) -> Event | None:
        """An event of this channel spoken on another node, numbered there; None if stale.

        The broker delivers at least once, so anything at or below the last seq is a repeat.
        """
        if event.seq <= self._seq.last:
            return None
        self._seq.last = event.seq
        if isinstance(event, Partial):
            self.partial = event
            self.remote_live = True
        elif isinstance(event, Final):
            if self.partial is not None and self.partial.utterance <= event.utterance:
                self.partial = None
            self._history.append(event)
            self.cues.extend(split_final(event))
            self._remote_end = max(self._remote_end, event.end)
            self._remote_utterances = max(self._remote_utterances, event.utterance + 1)
            self.remote_live = True
        elif isinstance(event, End):
            self._history.append(event)
            self._remote_end = max(self._remote_end, event.duration)
            self._remote_utterances = max(self._remote_utterances, event.utterances)
            self.partial = None
            self.remote_live = False
        elif isinstance(event, Speakers):
            self.speakers = event
        else:
            return None
        return event

    def replay(self, since: int) -> list[Event]:
        """What a viewer that last saw `since` missed and the channel still holds."""
        events = [e for e in self._history if e.seq > since]
        if self.speakers is not None:
            # Names and merges apply to finals older than `since` too: always said first.
            events.insert(0, self.speakers)
        if self.partial is not None and self.partial.seq > since:
            events.append(self.partial)
        return events


class ViewerBacklog:
    """What one viewer has yet to receive: every final, only the newest partial.

    A viewer that cannot keep up loses partials (each is replaced by the next anyway);
    once it is `viewer_backlog` finals behind it is cut off rather than buffered without
    bound, so one stalled browser can never slow the speaker or the other viewers.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Event] = deque()
        self._finals = 0
        self.dropped_partials = 0
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, event: Event) -> None:
        if self.overflowed:
            return
        if isinstance(event, Partial):
            kept = [e for e in self._items if not isinstance(e, Partial)]
            self.dropped_partials += len(self._items) - len(kept)
            self._items = deque(kept)
        else:
            self._finals += 1
            if self._finals > self.limit:
                self.overflowed = True
                self._items.clear()
                return
        self._items.append(event)

    def pop(self) -> Event | None:
        if not self._items:
            return None
        event = self._items.popleft()
        if not isinstance(event, Partial):
            self._finals -= 1
        return event
