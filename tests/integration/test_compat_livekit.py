"""LiveKit Agents' Deepgram STT plugin streaming a recording through /v1/listen (offline).

The plugin is in the dev extra, so CI runs this; it skips, naming the package, only where
`livekit-plugins-deepgram` is not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import reference, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.support.compat import CLIP, PACE_S, TOKEN, pcm_chunks

deepgram_plugin = pytest.importorskip("livekit.plugins.deepgram")
aiohttp = pytest.importorskip("aiohttp")
rtc = pytest.importorskip("livekit.rtc")
agents_stt = pytest.importorskip("livekit.agents.stt")

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def compat_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-livekit")
    yield running
    stop_server(running)


async def test_livekit_deepgram_stt_plugin(compat_server: RunningServer) -> None:
    kind = agents_stt.SpeechEventType
    events = []
    async with aiohttp.ClientSession() as session:
        stt = deepgram_plugin.STT(
            api_key=TOKEN, http_session=session,
            # the plugin's defaults (filler words on, among others): only the URL changes
            base_url=f"http://127.0.0.1:{compat_server.port}/v1/listen")
        stream = stt.stream()

        async def read() -> None:
            async for event in stream:
                events.append(event)

        reader = asyncio.create_task(read())
        for chunk in pcm_chunks():
            stream.push_frame(rtc.AudioFrame(chunk, 16000, 1, len(chunk) // 2))
            await asyncio.sleep(PACE_S)
        stream.end_input()
        await asyncio.wait_for(reader, 120)
    finals = [e for e in events if e.type == kind.FINAL_TRANSCRIPT]
    text = " ".join(e.alternatives[0].text for e in finals)
    assert wer(reference(CLIP), text) <= 0.15, text
    kinds = [e.type for e in events]
    # Each utterance: start of speech, (interims: endpointing=25 ms, clamped to our 200 ms,
    # leaves them few), its final, end of speech (speech_final).
    assert kinds.count(kind.START_OF_SPEECH) == len(finals) == kinds.count(kind.END_OF_SPEECH)
    assert kinds[0] == kind.START_OF_SPEECH and kinds.index(kind.FINAL_TRANSCRIPT) < kinds.index(
        kind.END_OF_SPEECH), kinds
