"""The client as a library, against an in-process server with the scripted decoder.

The first two functions are the README's "Use it from Python" snippet, word for word
but for the address: if this test passes, the ten lines a note tool copies work.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import wave
from collections.abc import AsyncIterator, Iterable

import pytest

from captioncast_client import CaptionStream, End, Final, Partial, Ready, follow, stream_url
from captioncast_client.streaming import stream
from tests.conftest import MISSING, SPEECH
from tests.support.fake_decoder import WORDS
from tests.support.inprocess import scripted_server

RECORDING = SPEECH / "wav" / "whisper_jfk.wav"
CHUNK = 3200  # 100 ms of 16 kHz s16le
DEADLINE_S = 60.0  # a failure, not a wait: the scripted decoder answers at once
SERVER = "ws://127.0.0.1:8765"  # the README's address, replaced by the test server's

pytestmark = pytest.mark.skipif(not RECORDING.is_file(), reason=MISSING.format(path=RECORDING))


async def caption(chunks):  # type: ignore[no-untyped-def]  # the README's snippet
    async with CaptionStream(stream_url(SERVER, channel="notes")) as captions:
        for chunk in chunks:
            await captions.send(chunk)
        await captions.end()  # the last finals, then `end`
        return [event.text async for event in captions if isinstance(event, Final)]


async def notes(shown: list[str]) -> None:  # the README's follower, printing into a list
    async for event in follow(SERVER, "notes", until_end=True):
        if isinstance(event, Final):
            shown.append(f"{event.start:7.1f}  {event.text}")


def _chunks() -> list[bytes]:
    with wave.open(str(RECORDING)) as w:
        pcm = w.readframes(w.getnframes())
    return [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]


async def _viewers(server: str, channel: str) -> None:
    """Until the server has a viewer (/healthz): before its first speaker the channel is not
    listed (GET /v1/channels), its viewers waiting on the name notwithstanding."""
    url = "http" + server[len("ws"):] + "/healthz"
    while True:
        answer = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(url).read()))
        if answer["viewers"]:
            return
        await asyncio.sleep(0.02)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    async with scripted_server() as running:
        monkeypatch.setattr(f"{__name__}.SERVER", running.ws_url)
        yield running.ws_url


async def test_the_readme_snippet_captions_a_recording_and_a_follower_sees_it(
        server: str) -> None:
    shown: list[str] = []
    follower = asyncio.create_task(notes(shown))
    await asyncio.wait_for(_viewers(server, "notes"), DEADLINE_S)  # then the speaker begins
    texts = await asyncio.wait_for(caption(_chunks()), DEADLINE_S)
    spoken = [t for t in texts if t]
    assert spoken and all(word.strip(".,").lower() in WORDS
                          for text in spoken for word in text.split())
    await asyncio.wait_for(follower, DEADLINE_S)
    assert [line[9:] for line in shown if line[9:]] == spoken  # "{start:7.1f}  {text}"


async def test_events_come_typed_ready_first_end_last_numbered_without_gaps(
        server: str) -> None:
    async with CaptionStream(stream_url(server)) as captions:
        assert isinstance(captions.ready, Ready) and captions.ready.protocol == 2
        for chunk in _chunks():
            await captions.send(chunk)
        await captions.end()
        events = [event async for event in captions]
    assert isinstance(events[0], Ready) and isinstance(events[-1], End)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.utterance for f in finals] == list(range(len(finals)))
    assert events[-1].utterances == len(finals)
    assert all(isinstance(e, Partial | Final) for e in events[1:-1])


async def test_stream_records_the_wire_form_and_hands_on_typed_events(server: str) -> None:
    seen: list[object] = []

    def chunks() -> Iterable[bytes]:
        yield from _chunks()

    result = await asyncio.wait_for(
        stream(stream_url(server), chunks(), realtime=False, on_event=seen.append),
        DEADLINE_S)
    assert result.events[0]["type"] == "ready"
    assert result.events[-1]["type"] == "end" and "received_at" in result.events[-1]
    assert [type(e).__name__.lower() for e in seen] == [e["type"] for e in result.events]
    assert result.text and result.sent_at
