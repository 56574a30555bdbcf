"""A channel's speaker table over MQTT with a real mosquitto, no model: published retained
on PREFIX/CHANNEL/speakers, and relayed into another node's channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from captioncast.fanout.hub import ChannelHub
from captioncast.fanout.mqtt import MqttBridge, MqttOptions
from captioncast.protocol.events import Final, SpeakerEntry, Speakers
from tests.integration.broker import Mosquitto
from tests.support.waiting import until


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


async def test_the_table_is_retained_and_relayed_to_other_nodes(broker: Mosquitto) -> None:
    options = MqttOptions("127.0.0.1", broker.port)
    speaking, watching = ChannelHub(), ChannelHub()
    async with MqttBridge(options, speaking, port=1) as a, MqttBridge(options, watching,
                                                                      port=2) as b:
        speaking.sinks.append(a)
        watching.sinks.append(b)
        speaking.attach_speaker("talk", "s1")
        speaking.publish("talk", Final(1, utterance=0, start=0.0, end=1.0, text="Hello.",
                                       language="en").labelled("S1"))
        table = Speakers(0, speakers=(SpeakerEntry("S1", "Alice"),))
        speaking.publish("talk", table)
        await until(lambda: (c := watching.get("talk")) is not None
                    and c.log.speakers is not None)
        relayed = watching.get("talk")
        assert relayed is not None and relayed.log.speakers is not None
        assert relayed.log.speakers.display_name("S1") == "Alice"
        final = [e for e in relayed.log.replay(0) if isinstance(e, Final)]
        assert [(f.speaker, f.text) for f in final] == [("S1", "Hello.")]
        speaking.detach_speaker("talk", "s1", None)
    # a subscriber that comes afterwards still gets the table: it is retained
    async with aiomqtt.Client("127.0.0.1", broker.port, timeout=5) as client:
        await client.subscribe("captions/talk/speakers", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                payload = message.payload
                assert isinstance(payload, bytes)
                assert json.loads(payload)["speakers"] == [{"id": "S1", "name": "Alice"}]
                break
