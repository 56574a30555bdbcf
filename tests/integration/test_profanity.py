"""The profanity filter on real speech and the real model: the final, the partials, the
caption file, a file's transcript and the Deepgram SDK's results all masked.

No recording of the speech set swears, so the server is told that "apostle" is profane
(`profanity.words`, a streamer's own words): "Mister Quilter is the apostle of the middle
classes" must come back as "... the ******* of the middle classes", "classes" untouched
although it holds "ass", which is listed.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from deepgram.listen.v1.types import ListenV1Results
from websockets.asyncio.client import connect

from tests.conftest import speech_path
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.integration.test_compat_deepgram import listen
from tests.support.compat import LIVE_S, TOKEN, pcm_chunks

pytestmark = pytest.mark.model

CLIP = "libri_dev_1272-128104-0000"  # "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES..."
MASKED = "*******"  # "apostle", a letter an asterisk, as Deepgram masks
FAMILY = "family"  # a channel masked by default


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, "--set", "profanity.words=apostle",
                           "--set", f"profanity.channels={FAMILY}", name="profanity")
    yield running
    stop_server(running)


def _get(server: RunningServer, path: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode())


def _post(server: RunningServer, path: str, body: bytes) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return str(response.read().decode())


def _masked(text: str) -> bool:
    """The masked word, and "classes" kept, and no "apostle" left."""
    return (re.search(r"(?<![*])\*{7}(?![*])", text) is not None
            and "classes" in text.lower() and "apostle" not in text.lower())


async def _stream(server: RunningServer, query: str) -> list[dict[str, Any]]:
    """The recording in real time on /v1/stream (so partials come); every event."""
    url = f"ws://127.0.0.1:{server.port}/v1/stream?{query}"
    events: list[dict[str, Any]] = []
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        async def read() -> None:
            async for message in ws:
                events.append(json.loads(message))

        reader = asyncio.create_task(read())
        for chunk in pcm_chunks(CLIP):
            await ws.send(chunk)
            await asyncio.sleep(LIVE_S)
        await ws.send(json.dumps({"type": "eos"}))
        await asyncio.wait_for(reader, 120)
    return events


async def test_a_channel_masked_by_default_masks_partials_finals_and_caption_files(
        server: RunningServer) -> None:
    events = await _stream(server, f"channel={FAMILY}")  # the stream says nothing
    finals = [e for e in events if e["type"] == "final" and e["text"]]
    partials = [e for e in events if e["type"] == "partial"]
    final_text = " ".join(e["text"] for e in finals)
    assert _masked(final_text), final_text
    assert MASKED in [w["word"].strip(" ,.") for e in finals for w in e["words"]], finals
    assert any(MASKED in e["text"] for e in partials), [e["text"] for e in partials]
    assert not any("apostle" in e["text"].lower() + e["stable"].lower() for e in partials)
    assert all(e["text"].startswith(e["stable"]) for e in partials)
    for name in ("captions.vtt", "captions.srt"):
        caption_file = _get(server, f"/v1/channels/{FAMILY}/{name}")
        assert _masked(caption_file), caption_file


def test_a_file_asks_for_it(server: RunningServer) -> None:
    wav = speech_path(CLIP).read_bytes()
    plain = _post(server, "/v1/transcribe?format=text", wav)  # the server's default: off
    assert "apostle" in plain.lower(), plain
    masked = _post(server, "/v1/transcribe?format=text&profanity_filter=true", wav)
    assert _masked(masked), masked


async def test_the_deepgram_sdk_asks_for_it(server: RunningServer) -> None:
    messages = await listen(server, pcm_chunks(CLIP), LIVE_S, interim_results="true",
                            punctuate="true", profanity_filter="true")
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    finals = [r.channel.alternatives[0] for r in results if r.is_final]
    transcript = " ".join(a.transcript for a in finals)
    assert _masked(transcript), transcript
    words = [w for a in finals for w in a.words]
    assert MASKED in [w.word for w in words], [w.word for w in words]
    assert any((w.punctuated_word or "").startswith(MASKED) for w in words)
    interims = [r.channel.alternatives[0].transcript for r in results if not r.is_final]
    assert any(MASKED in t for t in interims) and not any("apostle" in t.lower()
                                                          for t in interims), interims
