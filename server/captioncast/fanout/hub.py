"""Channels in the running server: who speaks, who watches, and where events go next.

With a transcript store, a channel's events reach its viewers and sinks in order, each
final once it is committed (or after the store's bound): see fanout/archive.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from typing import Protocol

from captioncast.core.channel import ChannelLog, ChannelOptions, ViewerBacklog
from captioncast.core.quality import CaptionQuality
from captioncast.errors import BadRequest, Overloaded
from captioncast.protocol.events import Event, Speakers
from captioncast.store.model import Position, StoreError

log = logging.getLogger("captioncast.channels")


class ChannelSink(Protocol):
    """Something beyond the viewers that follows every channel (the MQTT bridge)."""

    def channel_live(self, name: str) -> None: ...

    def channel_event(self, name: str, event: Event) -> None: ...

    def channel_ended(self, name: str) -> None: ...


class ChannelStore(Protocol):
    """Where a channel's events are kept (fanout/archive.py's Archive)."""

    def record(self, channel: str, event: Event, session: str) -> Awaitable[bool] | None: ...

    async def position(self, channel: str) -> Position | None: ...


class Viewer:
    """One `/v1/captions` connection's view of a channel."""

    def __init__(self, channel: Channel, limit: int) -> None:
        self.channel = channel
        self.backlog = ViewerBacklog(limit)
        self.wake = asyncio.Event()
        self.last_seq = 0

    def push(self, event: Event) -> None:
        if isinstance(event, Speakers):
            # A table replaces the last one whatever its seq: the replay says it first,
            # before finals numbered below it, which must not then count as repeats.
            self.backlog.push(event)
            self.wake.set()
            return
        # A final replayed from the history may also be waiting on its commit: once only.
        if event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        self.backlog.push(event)
        self.wake.set()

    async def next_events(self) -> list[Event]:
        """Wait for events; an empty list means the viewer fell too far behind."""
        while not len(self.backlog) and not self.backlog.overflowed:
            self.wake.clear()
            await self.wake.wait()
        if self.backlog.overflowed:
            return []
        events = []
        while (event := self.backlog.pop()) is not None:
            events.append(event)
        return events


class Channel:
    def __init__(self, name: str, options: ChannelOptions) -> None:
        self.log = ChannelLog(name, options)
        self.options = options
        self.speaker: str | None = None
        self.viewers: set[Viewer] = set()
        self.pending: asyncio.Task[None] | None = None  # the last event waiting on its commit
        # Wall clock of its speaker's last event, here or on another node. None: no speaker
        # has published to it in this process; viewers alone never make a channel.
        self.last_active: float | None = None
        self.quality = CaptionQuality()  # how its captions read, every speaker's added up

    @property
    def started(self) -> bool:
        return self.last_active is not None

    @property
    def name(self) -> str:
        return self.log.name

    @property
    def idle(self) -> bool:
        return self.speaker is None and not self.viewers


class ChannelHub:
    """Every channel of this server. Unused channels are forgotten oldest first."""

    def __init__(self, options: ChannelOptions | None = None) -> None:
        self.options = options or ChannelOptions()
        self.max_channels = self.options.max_channels
        self._channels: OrderedDict[str, Channel] = OrderedDict()
        self.sinks: list[ChannelSink] = []
        self.store: ChannelStore | None = None

    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def speakers(self, name: str) -> Speakers | None:
        """The channel's newest speaker table, if it has one."""
        channel = self._channels.get(name)
        return None if channel is None else channel.log.speakers

    async def prepare(self, name: str) -> None:
        """Before a channel is first used here: continue its numbering from the store."""
        if self.store is None or name in self._channels:
            return
        try:
            position = await self.store.position(name)
        except StoreError as error:
            # Its seq cannot restart at 1: a final stored later under a seq used before
            # would be refused as a repeat. A floor from the clock is above any seq used.
            log.warning("event=store_position_failed channel=%s error=%r", name, error.message)
            position = Position(seq=int(time.time() * 1000))
        channel = self._channel(name)
        if position is not None and not channel.log.live:
            channel.log.continue_from(position.seq, position.utterances, position.end,
                                      position.speakers_event())

    def _channel(self, name: str) -> Channel:
        channel = self._channels.get(name)
        if channel is None:
            if len(self._channels) >= self.max_channels:
                idle = next((n for n, c in self._channels.items() if c.idle), None)
                if idle is None:
                    raise Overloaded(f"the server is at its limit of {self.max_channels} channels")
                del self._channels[idle]
            channel = self._channels[name] = Channel(name, self.options)
        self._channels.move_to_end(name)
        return channel

    def forget(self, name: str) -> bool:
        """Its transcript was deleted: what memory holds of it goes too (not while live)."""
        channel = self._channels.get(name)
        if channel is None or channel.speaker is not None:
            return False
        if channel.viewers:  # they stay, and see the channel start afresh
            fresh = ChannelLog(name, self.options)
            fresh.continue_from(channel.log.last_seq, 0, 0.0)  # their `since` stays valid
            channel.log = fresh
            channel.last_active = None
        else:
            del self._channels[name]
        return True

    @property
    def viewer_count(self) -> int:
        return sum(len(c.viewers) for c in self._channels.values())

    # -- the speaker ----------------------------------------------------------------

    def attach_speaker(self, name: str, session_id: str) -> None:
        channel = self._channel(name)
        if channel.speaker is not None and channel.speaker != session_id:
            raise BadRequest(f"channel {name!r} already has a speaker; one speaker per channel")
        if channel.log.remote_live:
            raise BadRequest(f"channel {name!r} already has a speaker on another node; "
                             "one speaker per channel")
        channel.speaker = session_id
        channel.last_active = time.time()
        channel.log.begin()
        for sink in self.sinks:
            sink.channel_live(name)

    def add_quality(self, name: str, added: CaptionQuality) -> None:
        channel = self._channels.get(name)
        if channel is not None:
            channel.quality += added

    def publish(self, name: str, event: Event) -> Awaitable[bool] | None:
        """Renumber the speaker's event for the channel and send it on; for a final with a
        store, what its commit is awaited by (the speaker's connection waits on it too)."""
        channel = self._channels.get(name)
        if channel is None:
            return None
        relayed = channel.log.add(event)
        if relayed is None:
            return None
        channel.last_active = time.time()
        committed = None
        if self.store is not None:
            committed = self.store.record(name, relayed, channel.speaker or "")
        self._fan_out_after(channel, relayed, committed)
        return committed

    def detach_speaker(self, name: str, session_id: str, duration: float | None) -> None:
        channel = self._channels.get(name)
        if channel is None or channel.speaker != session_id:
            return
        speaker, channel.speaker = channel.speaker, None
        channel.last_active = time.time()
        end = channel.log.end(duration)
        if self.store is not None:
            self.store.record(name, end, speaker)
        self._fan_out_after(channel, end, None)
        for sink in self.sinks:
            sink.channel_ended(name)

    def _fan_out_after(self, channel: Channel, event: Event,
                       committed: Awaitable[bool] | None) -> None:
        """Fan out now, or behind the events still waiting on their commit."""
        if committed is None and channel.pending is None:
            self._fan_out(channel, event)
            return
        channel.pending = asyncio.create_task(
            self._fan_out_later(channel, event, channel.pending, committed))

    async def _fan_out_later(self, channel: Channel, event: Event,
                             before: asyncio.Task[None] | None,
                             committed: Awaitable[bool] | None) -> None:
        if before is not None:
            await before
        if committed is not None:
            await committed  # bounded by the store's wait: never raises, never hangs
        self._fan_out(channel, event)
        if channel.pending is asyncio.current_task():
            channel.pending = None

    def _fan_out(self, channel: Channel, event: Event, to_sinks: bool = True) -> None:
        for viewer in channel.viewers:
            viewer.push(event)
        if to_sinks:
            for sink in self.sinks:
                sink.channel_event(channel.name, event)

    # -- other nodes (through the broker) -------------------------------------------

    def relay(self, name: str, event: Event) -> None:
        """An event of a channel whose speaker is on another node."""
        channel = self._channel(name)
        if channel.speaker is not None:
            return  # our own events coming back from the broker
        relayed = channel.log.relay(event)
        if relayed is not None:
            channel.last_active = time.time()
            self._fan_out(channel, relayed, to_sinks=False)  # never back to the broker

    def remote_status(self, name: str, live: bool) -> None:
        channel = self._channels.get(name)
        if channel is None and not live:
            return
        channel = channel or self._channel(name)
        if channel.speaker is None:
            channel.log.remote_live = live
            if live:
                channel.last_active = time.time()

    # -- viewers --------------------------------------------------------------------

    def subscribe(self, name: str, since: int | None, older: Iterable[Event] = ()) -> Viewer:
        """A new viewer; `older`: the stored finals after `since` that memory no longer
        holds (before `channel.log.first_held`), replayed first."""
        channel = self._channel(name)
        replay = [*older, *channel.log.replay(since)] if since is not None else []
        # The replay itself must not count as falling behind.
        viewer = Viewer(channel, self.options.viewer_backlog + len(replay))
        if since is not None:
            for event in replay:
                viewer.push(event)
        else:
            if channel.log.speakers is not None:  # names for what is said from now on
                viewer.push(channel.log.speakers)
            if channel.log.partial is not None:
                viewer.push(channel.log.partial)  # show what is being said right now
        channel.viewers.add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        viewer.channel.viewers.discard(viewer)
        if viewer.backlog.dropped_partials:
            log.info("event=viewer_left channel=%s dropped_partials=%d", viewer.channel.name,
                     viewer.backlog.dropped_partials)
