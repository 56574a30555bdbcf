"""The profanity filter over real sockets, in-process: a masked word is masked for the
speaker, the channel's viewers, its caption files and a file's transcript alike, and only
for the streams it applies to. The scripted decoder says "alpha bravo charlie ...":
"bravo" is made profane for these tests (`profanity.words`)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from captioncast.options import StoreOptions
from captioncast.text.profanity import ProfanityOptions
from tests.support.inprocess import ScriptedServer, events_until, scripted_server, speech_frames

DEADLINE_S = 30.0
EXTRA = ProfanityOptions(words=("bravo",), channels=("kids",))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ScriptedServer]:
    # A store, so that the transcript read back is the archived one.
    store = StoreOptions(where=str(tmp_path / "store.sqlite3"))
    async with scripted_server(profanity=EXTRA, store=store) as running:
        yield running


async def _speak(server: ScriptedServer, query: str) -> list[dict[str, Any]]:
    """Stream the speech with `query`, paced so partials come; every event it got."""
    async with connect(f"{server.ws_url}/v1/stream?{query}") as ws:
        for frame in speech_frames():
            await ws.send(frame)
            await asyncio.sleep(0.002)
        await ws.send(json.dumps({"type": "eos"}))
        return await events_until(ws, "end")


def _texts(events: list[dict[str, Any]]) -> str:
    """Everything a display could show of these events."""
    shown = []
    for event in events:
        shown += [event.get("text", ""), event.get("stable", "")]
        shown += [w["word"] for w in event.get("words", [])]
    return " ".join(shown)


async def test_the_speaker_the_viewers_and_the_caption_files_see_it_masked(
        server: ScriptedServer) -> None:
    async with connect(f"{server.ws_url}/v1/captions?channel=show") as viewer:
        async with asyncio.timeout(DEADLINE_S):
            while (await server.get("/healthz")).json()["viewers"] != 1:
                await asyncio.sleep(0.005)
        spoken = await _speak(server, "channel=show&profanity_filter=true")
        seen = await events_until(viewer, "end")
    for events in (spoken, seen):
        finals = [e for e in events if e["type"] == "final"]
        partials = [e for e in events if e["type"] == "partial"]
        assert any("alpha ***** charlie" in e["text"] for e in finals), finals
        assert any("*****" in e["text"] for e in partials), partials
        assert any(w["word"] == "*****" for e in finals for w in e["words"])
        assert all(e["text"].startswith(e["stable"]) for e in partials)
        assert "bravo" not in _texts(events).lower()
    for path in ("captions.vtt", "captions.srt", "transcript?format=text"):
        answer = await server.get(f"/v1/channels/show/{path}")
        assert answer.status == 200, path
        assert b"alpha ***** charlie" in answer.body and b"bravo" not in answer.body, path


@pytest.mark.parametrize(("query", "masked"), [
    ("", False),  # the server's default: off
    ("profanity_filter=false", False),
    ("channel=kids", True),  # a channel masked by default (profanity.channels)
    ("channel=kids&profanity_filter=false", False),  # the stream says otherwise
    ("channel=show", False),
])
async def test_whom_it_applies_to(server: ScriptedServer, query: str, masked: bool) -> None:
    finals = [e for e in await _speak(server, query) if e["type"] == "final"]
    text = " ".join(e["text"] for e in finals)
    assert ("*****" in text, "bravo" in text) == (masked, not masked), text


async def test_the_servers_default_and_a_files_own_say() -> None:
    async with scripted_server(profanity=ProfanityOptions(on=True, words=("bravo",))) as server:
        finals = [e for e in await _speak(server, "") if e["type"] == "final"]
        assert "alpha ***** charlie" in " ".join(e["text"] for e in finals)
        pcm = b"".join(speech_frames())
        for query, masked in (("", True), ("&profanity_filter=false", False)):
            body = await _transcribe(server, f"?encoding=pcm_s16le&sample_rate=16000"
                                             f"&format=text{query}", pcm)
            assert ("*****" in body, "bravo" in body) == (masked, not masked), body


async def _transcribe(server: ScriptedServer, query: str, pcm: bytes) -> str:
    request = urllib.request.Request(f"{server.http_url}/v1/transcribe{query}", data=pcm,
                                     method="POST")

    def post() -> str:
        with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(post)
