"""MQTT with a real mosquitto: every final arrives in order, across a broker crash and restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from websockets.asyncio.client import connect

from captioncast.protocol.events import Event, Final
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from tests.conftest import speech_path
from tests.integration.broker import Mosquitto
from tests.integration.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.model


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


class Subscriber:
    """A persistent-session subscriber that reconnects by itself, as a note tool would."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self.identifier = f"test-{secrets.token_hex(4)}"
        self.messages: list[tuple[str, str]] = []
        self.connected = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.broker.port, identifier=self.identifier,
                                          clean_session=False, timeout=5) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        text = payload.decode() if isinstance(payload, bytes) else str(payload)
                        self.messages.append((str(message.topic), text))
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.1)

    def finals(self) -> list[dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        for topic, payload in self.messages:
            if topic.endswith("/final"):
                event = json.loads(payload)
                seen.setdefault(event["seq"], event)  # QoS 1 is at least once
        return [seen[s] for s in sorted(seen)]

    def of(self, suffix: str) -> list[str]:
        return [p for t, p in self.messages if t.endswith(suffix)]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def retained_status(broker: Mosquitto, channel: str) -> str:
    async with aiomqtt.Client("127.0.0.1", broker.port, timeout=5) as client:
        await client.subscribe(f"captions/{channel}/status", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                payload = message.payload
                return payload.decode() if isinstance(payload, bytes) else str(payload)
    raise AssertionError("no retained status")


async def _until(condition: Callable[[], object], what: str, deadline_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _audio(*names: str) -> list[bytes]:
    chunks: list[bytes] = []
    for name in names:
        chunks += [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]
    return chunks


async def test_every_final_reaches_the_broker_across_a_crash(broker: Mosquitto) -> None:
    server: RunningServer = await asyncio.to_thread(
        start_server, "--mqtt", broker.url, "--mqtt-partials", name="mqtt")
    channel = f"class-{secrets.token_hex(3)}"
    subscriber = Subscriber(broker, f"captions/{channel}/#")
    try:
        await asyncio.wait_for(subscriber.connected.wait(), 10)
        finals: list[dict[str, Any]] = []

        def on_event(event: Event) -> None:
            if isinstance(event, Final) and event.text:
                finals.append(event.to_dict())

        speaking = asyncio.create_task(stream(
            stream_url(server.url, channel=channel),
            _audio("whisper_jfk", "libri_dev_2412-153948-0000"), on_event=on_event))
        await _until(lambda: finals, "a first final")
        broker.kill()  # a crash: no clean disconnect, nothing saved after this moment
        killed_at = time.monotonic()
        # The broker stays away until the server has noticed and has made a final meanwhile
        # (the speaker got it): that one must reach the subscriber all the same.
        before = len(finals)
        await _until(lambda: "event=mqtt_unavailable" in server.log.read_text(),
                     "the server to notice the broker is gone")
        await _until(lambda: len(finals) > before, "a final while the broker is away")
        broker.start()
        speaker = await speaking
        expected = [f["text"] for f in speaker.finals]
        assert len([t for t in expected if t]) >= 3
        async with asyncio.timeout(40):
            while [f["text"] for f in subscriber.finals()] != expected:
                await asyncio.sleep(0.2)
        seqs = [f["seq"] for f in subscriber.finals()]
        assert seqs == sorted(seqs)
        # Partials are published when enabled: those the speaker got while the broker was
        # up (well before the crash, so that one was not on its way out), at least. How
        # many partials there are depends on how fast this machine decodes.
        if any(e["type"] == "partial" and e["text"] and e["received_at"] < killed_at - 0.5
               for e in speaker.events):
            assert subscriber.of("/partial"), "partials are published when enabled"
        for payload in subscriber.of("/partial"):
            assert json.loads(payload)["type"] == "partial"
        assert "live" in subscriber.of("/status")
        async with asyncio.timeout(10):
            while await retained_status(broker, channel) != "ended":
                await asyncio.sleep(0.2)
        log = server.log.read_text()
        assert "event=mqtt_unavailable" in log and "event=mqtt_connected" in log

        # A server that dies with a channel live leaves `ended` behind: its last will.
        crashed = f"crash-{secrets.token_hex(3)}"
        async with connect(stream_url(server.url, channel=crashed)) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(b"\0" * 3200)
            async with asyncio.timeout(10):
                while await retained_status(broker, crashed) != "live":
                    await asyncio.sleep(0.2)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
        async with asyncio.timeout(10):
            while await retained_status(broker, crashed) != "ended":
                await asyncio.sleep(0.2)
    finally:
        await subscriber.close()
        await asyncio.to_thread(stop_server, server)
