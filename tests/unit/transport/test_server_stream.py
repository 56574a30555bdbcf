"""The WebSocket routes over a real socket, in-process, with the scripted decoder: the
protocol's events, their order and numbering, refusals and their close codes, viewers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from captioncast.protocol import codes
from captioncast.transport.security import SecurityOptions
from tests.support.inprocess import ScriptedServer, events_until, scripted_server, speech_frames

TOKEN = "s3cret-token"
DEADLINE_S = 30.0  # the scripted decoder answers at once: a failure, never a wait


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with scripted_server() as running:
        yield running


@pytest.fixture
async def guarded() -> AsyncIterator[ScriptedServer]:
    async with scripted_server(security=SecurityOptions(tokens=(TOKEN,))) as running:
        yield running



async def _read(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every event until the server closes, and the close code it closed with."""
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                events.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        pass
    return events, ws.close_code



async def _viewers(server: ScriptedServer, count: int) -> None:
    """Until the server counts `count` viewers: subscribed, so they miss nothing said next."""
    async with asyncio.timeout(DEADLINE_S):
        while (await server.get("/healthz")).json()["viewers"] != count:
            await asyncio.sleep(0.005)


async def _refused(url: str, **headers: str) -> tuple[list[dict[str, Any]], int | None]:
    async with connect(url, additional_headers=headers) as ws:
        return await _read(ws)


async def _speak(url: str, frames: list[bytes]) -> tuple[list[dict[str, Any]], int | None]:
    async with connect(url) as ws:
        for frame in frames:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "eos"}))
        return await _read(ws)


async def test_ready_comes_first_with_the_protocols_fields(server: ScriptedServer) -> None:
    async with connect(server.ws_url + "/v1/stream?language=en") as ws:
        ready = json.loads(await ws.recv())
    assert ready["type"] == "ready" and ready["seq"] == 1 and ready["protocol"] == 2
    assert isinstance(ready["session"], str) and ready["session"]
    assert ready["model"] == "scripted" and ready["sample_rate"] == 16000
    assert ready["language"] == "en" and ready["resume_until"] == 600
    assert "resumed" not in ready and "audio_received" not in ready


async def test_events_are_ordered_numbered_and_end_closes_with_1000(
        server: ScriptedServer) -> None:
    frames = speech_frames()
    async with connect(server.ws_url + "/v1/stream") as ws:
        for frame in frames[:20]:
            await ws.send(frame)
        events = await events_until(ws, "partial")  # two seconds in, the speaker is shown
        for frame in frames[20:]:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "eos"}))
        rest, code = await _read(ws)
    events += rest
    assert code == codes.NORMAL
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ready" and kinds[-1] == "end" and kinds.count("end") == 1
    assert set(kinds[1:-1]) == {"partial", "final"}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finals = [e for e in events if e["type"] == "final"]
    assert [f["utterance"] for f in finals] == list(range(len(finals)))
    assert events[-1]["utterances"] == len(finals)
    finished: set[int] = set()
    for event in events[1:-1]:  # no partial of an utterance after its final
        assert event["utterance"] not in finished, event
        if event["type"] == "final":
            finished.add(event["utterance"])
        else:
            assert event["text"].startswith(event["stable"]), event
    assert all(f["words"] for f in finals if f["text"])
    assert events[-1]["duration"] == pytest.approx(sum(map(len, speech_frames())) / 32000, abs=0.01)


async def test_interim_false_sends_no_partials_and_words_false_no_words(
        server: ScriptedServer) -> None:
    events, _ = await _speak(server.ws_url + "/v1/stream?interim=false&words=false",
                             speech_frames())
    kinds = {e["type"] for e in events}
    assert kinds == {"ready", "final", "end"}
    assert all("words" not in e or e["words"] == [] for e in events if e["type"] == "final")


async def test_a_malformed_control_message_is_an_error_and_the_stream_goes_on(
        server: ScriptedServer) -> None:
    async with connect(server.ws_url + "/v1/stream") as ws:
        await ws.send("not json")
        await ws.send(json.dumps({"type": "keepalive"}))
        await ws.send(json.dumps({"type": "eos"}))
        events, code = await _read(ws)
    assert [e["type"] for e in events] == ["ready", "error", "end"]
    assert events[1]["code"] == "bad_request" and events[1]["seq"] == 2
    assert code == codes.NORMAL


async def test_a_frame_over_the_limit_is_too_large_and_closes_1009(
        server: ScriptedServer) -> None:
    async with connect(server.ws_url + "/v1/stream") as ws:
        await ws.send(bytes(64 * 1024 + 2))
        events, code = await _read(ws)
    assert [e["type"] for e in events] == ["ready", "error"]
    assert events[-1]["code"] == "too_large" and code == codes.TOO_BIG


@pytest.mark.parametrize("query", [
    "sample_rate=7", "sample_rate=many", "encoding=mp3", "channels=3", "task=summarize",
    "language=klingon", "channel=a%20b", "interim=maybe", "colour=blue",
    "sample_rate=16000&sample_rate=8000", "resume=nosuchsession",
    "language=de", "task=translate",  # the scripted decoder is English-only, as tiny.en
])
async def test_bad_query_parameters_are_refused_with_bad_request_and_1008(
        server: ScriptedServer, query: str) -> None:
    events, code = await _refused(f"{server.ws_url}/v1/stream?{query}")
    assert [e["type"] for e in events] == ["error"], events
    assert events[0]["code"] == "bad_request" and events[0]["seq"] == 1 and events[0]["message"]
    assert code == codes.POLICY


@pytest.mark.parametrize("query", ["", "channel=a%20b", "channel=show&since=x", "channel=s&x=1"])
async def test_a_viewer_with_bad_parameters_is_refused_with_1008(
        server: ScriptedServer, query: str) -> None:
    events, code = await _refused(f"{server.ws_url}/v1/captions?{query}")
    assert [e["code"] for e in events] == ["bad_request"] and code == codes.POLICY


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/captions?channel=show"])
async def test_a_missing_or_wrong_token_is_unauthorized_and_closes_4001(
        guarded: ScriptedServer, path: str) -> None:
    joined = "&" if "?" in path else "?"
    for url, headers in ((guarded.ws_url + path, {}),
                         (guarded.ws_url + path, {"Authorization": "Bearer wrong"}),
                         (f"{guarded.ws_url}{path}{joined}token=wrong", {})):
        events, code = await _refused(url, **headers)
        assert [(e["type"], e["code"], e["seq"]) for e in events] == [
            ("error", "unauthorized", 1)], (url, headers)
        assert code == codes.UNAUTHORIZED


async def test_the_right_token_in_a_header_or_the_query_opens_the_stream(
        guarded: ScriptedServer) -> None:
    for url, headers in ((guarded.ws_url + "/v1/stream", {"Authorization": f"Bearer {TOKEN}"}),
                         (f"{guarded.ws_url}/v1/stream?token={TOKEN}", {})):
        async with connect(url, additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"


async def test_a_viewer_sees_the_speakers_captions_in_the_channels_own_numbering(
        server: ScriptedServer) -> None:
    async with connect(server.ws_url + "/v1/captions?channel=show") as viewer:
        await _viewers(server, 1)
        spoken, _ = await _speak(server.ws_url + "/v1/stream?channel=show", speech_frames())
        seen = await events_until(viewer, "end")
    assert [e["seq"] for e in seen] == sorted({e["seq"] for e in seen})  # rising, no repeats
    assert {e["type"] for e in seen} <= {"partial", "final", "end"}
    assert [e["text"] for e in seen if e["type"] == "final"] == [
        e["text"] for e in spoken if e["type"] == "final"]
    assert seen[-1]["utterances"] == spoken[-1]["utterances"]


async def test_since_replays_the_finals_a_viewer_missed(server: ScriptedServer) -> None:
    async with connect(server.ws_url + "/v1/captions?channel=show") as first:
        await _viewers(server, 1)
        await _speak(server.ws_url + "/v1/stream?channel=show", speech_frames())
        live = await events_until(first, "end")
    finals = [e for e in live if e["type"] == "final"]
    assert len(finals) >= 2, "the recording makes two finals or more"

    async with connect(server.ws_url + "/v1/captions?channel=show&since=0") as everything:
        replayed = await events_until(everything, "end")
    assert replayed == [*finals, live[-1]]  # the finals and the end, exactly as sent

    since = finals[0]["seq"]
    async with connect(f"{server.ws_url}/v1/captions?channel=show&since={since}") as later:
        rest = await events_until(later, "end")
    assert rest == [*finals[1:], live[-1]]
