"""Channels to MQTT with aiomqtt: finals QoS 1, partials QoS 0, a retained status with a will,
and the retained speaker table (`speakers`, QoS 1) of a channel with diarization.

Each live channel gets its own broker connection so that its last will can say `ended`
for that channel if the server dies. Publishing never blocks captioning: events wait in
a bounded outbox while the broker is away and go out in order when it is back.

The broker is also how nodes behind one load balancer share channels: every node follows
every channel's topics, so a viewer on any node sees (and can replay) a channel whose
speaker is on another. Captions are small (a few hundred bytes a second per channel), so
following them all costs little and keeps replay and caption files complete everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit

import aiomqtt

from captioncast.errors import BadRequest, CaptioncastError
from captioncast.fanout.hub import ChannelHub
from captioncast.protocol.backoff import Backoff
from captioncast.protocol.events import (
    End,
    Event,
    Final,
    Partial,
    ProtocolError,
    Speakers,
    parse_event,
)

log = logging.getLogger("captioncast.mqtt")

FLUSH_ON_EXIT_S = 3.0  # at shutdown, how long queued finals may take to reach the broker


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    prefix: str = "captions"
    partials: bool = False
    outbox: int = 10_000  # finals held per channel while the broker is unreachable
    backoff_max_s: float = 30.0

    @classmethod
    def from_url(cls, url: str, **overrides: object) -> MqttOptions:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BadRequest(f"--mqtt must look like mqtt://host:1883 or mqtts://host:8883, "
                             f"got {url!r}")
        tls = parts.scheme == "mqtts"
        values: dict[str, object] = {
            "host": parts.hostname,
            "port": parts.port or (8883 if tls else 1883),
            "tls": tls,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        prefix = str(values.get("prefix", "captions")).strip("/")
        if not prefix or any(c in prefix for c in "#+"):
            raise BadRequest("--mqtt-prefix must be a topic path without wildcards")
        values["prefix"] = prefix
        return cls(**values)  # type: ignore[arg-type]


class BrokerConnection:
    """One broker connection kept up: connect, run a session on it, reconnect with backoff.

    The TLS context and the client's settings are made once. Each attempt gets a fresh
    aiomqtt.Client from them: aiomqtt 2.x keeps a lost connection's state (its
    `_connected` future) in a reused client, so that a reconnect may not wait for the
    broker's CONNACK (empicano/aiomqtt#288).
    """

    def __init__(self, options: MqttOptions, identifier: str, label: str,
                 will: aiomqtt.Will | None = None, clean_session: bool | None = None) -> None:
        self.options = options
        self.label = label  # for the log: which channel, or "follow"
        self.connected = asyncio.Event()
        tls = ssl.create_default_context(cafile=options.ca_file) if options.tls else None
        self.client = functools.partial(
            aiomqtt.Client, options.host, options.port, username=options.username,
            password=options.password, identifier=identifier, tls_context=tls, timeout=10,
            keepalive=15, will=will, clean_session=clean_session)

    async def run(self, session: Callable[[aiomqtt.Client], Awaitable[None]],
                  done: Callable[[], bool] = lambda: False) -> None:
        """Run `session` on a connection, again after each loss, until `done()`."""
        backoff = Backoff(max_s=self.options.backoff_max_s)
        while not done():
            failure: aiomqtt.MqttError | None = None
            try:
                async with self.client() as client:
                    self.connected.set()
                    backoff.reset()
                    await session(client)
            except aiomqtt.MqttError as error:
                failure = error
            finally:
                self.connected.clear()
            if done():
                return
            delay = backoff.next_delay()
            if failure is not None:
                log.warning("event=mqtt_unavailable link=%s error=%r retry_in_s=%.1f",
                            self.label, str(failure), delay)
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: str
    qos: int
    retain: bool = False


class ChannelPublisher:
    """One channel's outbox and broker connection."""

    def __init__(self, options: MqttOptions, channel: str, client_id: str) -> None:
        self.options = options
        self.channel = channel
        self.client_id = client_id
        self._base = f"{options.prefix}/{channel}"
        self._outbox: deque[_Message] = deque()
        self._partial: _Message | None = None
        self._wake = asyncio.Event()
        self.live = False
        self.dropped = 0
        self.published = 0
        self.task: asyncio.Task[None] | None = None
        self._broker = BrokerConnection(
            options, client_id, label=channel,
            will=aiomqtt.Will(f"{self._base}/status", "ended", qos=1, retain=True))

    # -- called by the channel hub; never blocks ------------------------------------

    def status(self, live: bool) -> None:
        self.live = live
        self._put(_Message(f"{self._base}/status", "live" if live else "ended", 1, True))

    def event(self, event: Event) -> None:
        if isinstance(event, Final):
            self._partial = None  # the final supersedes any partial not yet sent
            self._put(_Message(f"{self._base}/final", event.to_json(), 1))
        elif isinstance(event, End):
            self._put(_Message(f"{self._base}/end", event.to_json(), 1))
        elif isinstance(event, Speakers):
            # Retained: a subscriber that comes later still learns who is who, as a late
            # viewer is replayed the table first.
            self._put(_Message(f"{self._base}/speakers", event.to_json(), 1, True))
        elif isinstance(event, Partial) and self.options.partials:
            self._partial = _Message(f"{self._base}/partial", event.to_json(), 0)
            self._wake.set()

    def _put(self, message: _Message) -> None:
        if len(self._outbox) >= self.options.outbox:
            self._outbox.popleft()
            self.dropped += 1
            log.warning("event=mqtt_dropped channel=%s dropped=%d", self.channel, self.dropped)
        self._outbox.append(message)
        self._wake.set()

    @property
    def finished(self) -> bool:
        return not self.live and not self._outbox

    # -- the connection -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._broker.connected.is_set()

    async def run(self) -> None:
        await self._broker.run(self._publish_all, done=lambda: self.finished)

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        log.info("event=mqtt_connected channel=%s broker=%s:%d queued=%d", self.channel,
                 self.options.host, self.options.port, len(self._outbox))
        while True:
            if self._outbox:
                message = self._outbox[0]
                # Removed only once the broker acknowledged it (QoS 1): a drop mid-way
                # sends it again after reconnecting, at least once, never lost.
                await client.publish(message.topic, message.payload, qos=message.qos,
                                     retain=message.retain)
                if self._outbox and self._outbox[0] is message:
                    self._outbox.popleft()
                self.published += 1
            elif self._partial is not None:
                message, self._partial = self._partial, None
                await client.publish(message.topic, message.payload, qos=0)
            elif self.finished:
                return
            else:
                self._wake.clear()
                await self._wake.wait()


class ChannelFollower:
    """Feeds the channels spoken on other nodes into this node's hub."""

    def __init__(self, options: MqttOptions, hub: ChannelHub, client_id: str) -> None:
        self.options = options
        self.hub = hub
        self.client_id = client_id
        # A persistent session: QoS 1 finals sent while we reconnect are kept for us.
        self._broker = BrokerConnection(options, client_id, label="follow",
                                        clean_session=False)
        self.connected = self._broker.connected

    async def run(self) -> None:
        await self._broker.run(self._follow)

    async def _follow(self, client: aiomqtt.Client) -> None:
        await client.subscribe(f"{self.options.prefix}/+/+", qos=1)
        async for message in client.messages:
            self._receive(str(message.topic), message.payload)

    def _receive(self, topic: str, payload: object) -> None:
        parts = topic[len(self.options.prefix) + 1 :].split("/")
        if len(parts) != 2:
            return
        name, kind = parts
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        if kind == "status":
            self.hub.remote_status(name, text == "live")
            return
        if kind not in ("final", "partial", "end", "speakers"):
            return
        try:
            event = parse_event(text)
        except ProtocolError:
            log.warning("event=mqtt_bad_message topic=%s", topic)
            return
        if isinstance(event, Partial | Final | End | Speakers):  # never ready or error
            try:
                self.hub.relay(name, event)
            except CaptioncastError as error:  # a malformed name or too many channels
                log.warning("event=mqtt_relay_refused topic=%s error=%r", topic, error.message)


class MqttBridge:
    """The channel sink that mirrors every channel to the broker, and follows other nodes'."""

    def __init__(self, options: MqttOptions, hub: ChannelHub | None = None,
                 port: int = 0) -> None:
        self.options = options
        self._publishers: dict[str, ChannelPublisher] = {}
        self._node = f"captioncast-{socket.gethostname()}-{os.getpid()}"
        # The follower's session persists on the broker, so its id must be the same after
        # a restart (a new id each time would leave sessions queueing messages forever).
        follow_id = f"captioncast-{socket.gethostname()}-{port}-follow"
        self.follower = ChannelFollower(options, hub, follow_id) if hub else None
        self._follow_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MqttBridge:
        log.info("event=mqtt_enabled broker=%s:%d prefix=%s partials=%s", self.options.host,
                 self.options.port, self.options.prefix, self.options.partials)
        if self.follower is not None:
            self._follow_task = asyncio.get_running_loop().create_task(
                self.follower.run(), name="mqtt-follow")
            # Learn which channels are live elsewhere before taking speakers, briefly.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.follower.connected.wait(), 2.0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for publisher in self._publishers.values():
            if publisher.live:
                publisher.status(False)
        if self._follow_task is not None:
            self._follow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow_task
        tasks = [p.task for p in self._publishers.values() if p.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=FLUSH_ON_EXIT_S)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def publisher(self, name: str) -> ChannelPublisher | None:
        return self._publishers.get(name)

    def _start(self, publisher: ChannelPublisher) -> None:
        if publisher.task is None or publisher.task.done():
            publisher.task = asyncio.get_running_loop().create_task(
                publisher.run(), name=f"mqtt-{publisher.channel}")

    def channel_live(self, name: str) -> None:
        publisher = self._publishers.get(name)
        if publisher is None:
            publisher = ChannelPublisher(self.options, name, f"{self._node}-{name}")
            self._publishers[name] = publisher
        publisher.status(True)
        self._start(publisher)

    def channel_event(self, name: str, event: Event) -> None:
        publisher = self._publishers.get(name)
        if publisher is not None:
            publisher.event(event)
            self._start(publisher)

    def channel_ended(self, name: str) -> None:
        publisher = self._publishers.get(name)
        if publisher is not None:
            publisher.status(False)
            self._start(publisher)
