"""What a channel is, over real sockets, in-process: a speaker publishing to a name makes it;
viewers, the overlay and caption files never do; `GET /v1/channels` marks live and ended
channels with their last activity, live first. With and without a transcript store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from captioncast.options import StoreOptions
from tests.support.inprocess import ScriptedServer, events_until, scripted_server, speech_frames

DEADLINE_S = 30.0


@pytest.fixture(params=["memory", "sqlite"])
async def server(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[ScriptedServer]:
    where = str(tmp_path / "store.sqlite3") if request.param == "sqlite" else None
    async with scripted_server(store=StoreOptions(where=where)) as running:
        yield running




async def _speak_all(server: ScriptedServer, channel: str, pace_s: float = 0.0) -> None:
    async with connect(f"{server.ws_url}/v1/stream?channel={channel}") as ws:
        for frame in speech_frames():
            await ws.send(frame)
            if pace_s:
                await asyncio.sleep(pace_s)  # time for partials between frames
        await ws.send(json.dumps({"type": "eos"}))
        await events_until(ws, "end")


async def _viewers(server: ScriptedServer, count: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (await server.get("/healthz")).json()["viewers"] != count:
            await asyncio.sleep(0.005)


async def _listed(server: ScriptedServer) -> list[dict[str, Any]]:
    answer = await server.get("/v1/channels")
    assert answer.status == 200
    return list(answer.json()["channels"])


async def test_viewing_a_name_never_makes_it_a_channel(server: ScriptedServer) -> None:
    async with connect(f"{server.ws_url}/v1/captions?channel=ghost") as viewer, \
            connect(f"{server.ws_url}/v1/captions?channel=ghost&since=0"):
        await _viewers(server, 2)
        assert (await server.get("/overlay?channel=ghost")).status == 200
        assert await _listed(server) == []
        for path in ("/v1/channels/ghost/captions.vtt", "/v1/channels/ghost/captions.srt"):
            assert (await server.get(path)).status == 404, path
        if (await server.get("/healthz")).json()["store"]["status"] != "off":
            assert (await server.get("/v1/channels/ghost/transcript")).status == 404

        # the name becomes a channel when a speaker publishes to it, and its viewers see it
        await _speak_all(server, "ghost")
        finals = [e for e in await events_until(viewer, "end") if e["type"] == "final"]
        assert finals
    [entry] = await _listed(server)
    assert (entry["channel"], entry["state"], entry["live"]) == ("ghost", "ended", False)
    assert (await server.get("/v1/channels/ghost/captions.vtt")).status == 200


async def test_the_list_marks_live_and_ended_with_last_activity_live_first(
        server: ScriptedServer) -> None:
    before = time.time()
    await _speak_all(server, "a-ended")
    async with connect(f"{server.ws_url}/v1/stream?channel=b-live") as speaker:
        frames = iter(speech_frames())
        async with asyncio.timeout(DEADLINE_S):
            while not any(c["channel"] == "b-live" for c in await _listed(server)):
                await speaker.send(next(frames))
        listed = await _listed(server)
        assert [(c["channel"], c["state"], c["live"]) for c in listed] == [
            ("b-live", "live", True), ("a-ended", "ended", False)]
        for entry in listed:
            assert before <= entry["last_active"] <= time.time(), entry
        assert listed[1]["last_active"] <= listed[0]["last_active"]


async def test_a_channel_and_the_metrics_say_how_its_captions_read(
        server: ScriptedServer) -> None:
    await _speak_all(server, "talk", pace_s=0.01)
    await _speak_all(server, "talk", pace_s=0.01)  # a second speaker's counts add up
    (entry,) = [c for c in await _listed(server) if c["channel"] == "talk"]
    quality = entry["quality"]
    assert quality["finals"] >= 2 and quality["final_words"] > 0
    # the scripted decoder garbles every partial's last word: the next one changes it
    assert 0 < quality["shown_words_changed"] <= quality["shown_words"]
    assert quality["flicker_per_min"] > 0 and quality["words_per_min"] > 0
    assert quality["audio_s"] > 20  # two passes over the 11 s clip
    metrics = (await server.get("/metrics")).body.decode()
    for name in ("captioncast_shown_words_total", "captioncast_shown_words_changed_total",
                 "captioncast_final_words_total", "captioncast_empty_finals_total"):
        assert name in metrics, name
    line = next(x for x in metrics.splitlines()
                if x.startswith("captioncast_final_words_total"))
    assert float(line.split()[-1]) == quality["final_words"]
