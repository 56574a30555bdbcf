"""Deepgram's live API at /v1/listen, driven by the official deepgram-sdk; real model and speech."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import reference, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.support.compat import CLIP, LIVE_S, PACE_S, TOKEN, pcm_chunks

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def compat_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-deepgram")
    yield running
    stop_server(running)


def client_for(server: RunningServer, key: str = TOKEN) -> AsyncDeepgramClient:
    """The SDK, with only its host changed."""
    host = f"127.0.0.1:{server.port}"
    environment = DeepgramClientEnvironment(base=f"http://{host}", production=f"ws://{host}",
                                            agent=f"ws://{host}", agent_rest=f"http://{host}")
    return AsyncDeepgramClient(api_key=key, environment=environment)


async def listen(server: RunningServer, chunks: list[bytes], pace_s: float = PACE_S,
                 **options: Any) -> list[Any]:
    """Stream `chunks` through the SDK's live client; every message it parsed."""
    messages: list[Any] = []
    client = client_for(server)
    async with client.listen.v1.connect(model="nova-3", encoding="linear16",
                                        sample_rate=16000, **options) as socket:
        async def read() -> None:
            async for message in socket:
                messages.append(message)

        reader = asyncio.create_task(read())
        for chunk in chunks:
            await socket.send_media(chunk)
            await asyncio.sleep(pace_s)
        await socket.send_close_stream()
        await asyncio.wait_for(reader, 120)
    return messages


async def test_sdk_streams_a_recording(compat_server: RunningServer) -> None:
    messages = await listen(compat_server, pcm_chunks(), LIVE_S, interim_results="true",
                            punctuate="true", vad_events="true", utterance_end_ms="1000",
                            endpointing="300", keyterm="Americans")
    kinds = [type(m).__name__ for m in messages]
    assert all(not isinstance(m, dict) for m in messages), messages  # the SDK parsed them all
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    finals = [r for r in results if r.is_final]
    transcript = " ".join(r.channel.alternatives[0].transcript for r in finals)
    assert wer(reference(CLIP), transcript) <= 0.15, transcript
    assert len(finals) >= 2 and any(not r.is_final for r in results), kinds
    assert all(r.speech_final and not r.from_finalize for r in finals)
    # The words carry what Deepgram's do: plain and punctuated forms, in order, in time.
    words = [w for r in finals for w in r.channel.alternatives[0].words]
    assert words and all(w.start <= w.end and 0 <= w.confidence <= 1 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert any(w.punctuated_word != w.word for w in words)  # "Americans," vs "americans"
    assert all(w.word == w.word.lower() for w in words)
    for r in finals:
        assert r.start >= 0 and r.duration > 0 and r.metadata.model_info.arch == "whisper"
    # Interims carry words too, as Deepgram's do: one per word of their transcript, in
    # order, within the interim's audio (their times are approximate: spread over it).
    interims = [r for r in results if not r.is_final and r.channel.alternatives[0].transcript]
    assert interims, kinds
    for r in interims:
        alternative = r.channel.alternatives[0]
        interim_words = alternative.words
        assert [w.punctuated_word for w in interim_words] == alternative.transcript.split()
        assert all(w.word == w.word.lower() and w.word for w in interim_words)
        assert all(0 <= w.confidence <= 1 for w in interim_words)
        starts = [w.start for w in interim_words]
        assert starts == sorted(starts)
        assert all(w.start <= w.end for w in interim_words)
        assert r.start - 0.001 <= starts[0] and interim_words[-1].end <= r.start + r.duration
    # SpeechStarted comes before each utterance's first Results; UtteranceEnd after its final.
    assert isinstance(messages[0], ListenV1SpeechStarted), kinds
    assert sum(isinstance(m, ListenV1SpeechStarted) for m in messages) == len(finals)
    ends = [m for m in messages if isinstance(m, ListenV1UtteranceEnd)]
    assert len(ends) == len([r for r in finals if r.channel.alternatives[0].transcript])
    # CloseStream: the last finals, then Metadata, then a normal close.
    assert isinstance(messages[-1], ListenV1Metadata), kinds
    assert messages[-1].duration == pytest.approx(12.0, abs=0.2)
    assert messages[-1].channels == 1


async def test_defaults_are_deepgrams_no_interim_no_punctuation(
        compat_server: RunningServer) -> None:
    messages = await listen(compat_server, pcm_chunks())
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    assert results and all(r.is_final for r in results)
    text = " ".join(r.channel.alternatives[0].transcript for r in results)
    assert text == text.lower() and "," not in text and "." not in text, text
    assert wer(reference(CLIP), text) <= 0.15, text
    assert not any(isinstance(m, ListenV1SpeechStarted | ListenV1UtteranceEnd) for m in messages)


async def test_finalize_ends_the_utterance_now(compat_server: RunningServer) -> None:
    """Finalize mid-speech: that Results says from_finalize, then the stream goes on."""
    client = client_for(compat_server)
    chunks = pcm_chunks(trailing_silence_s=0)
    messages: list[Any] = []
    async with client.listen.v1.connect(model="nova-3", encoding="linear16",
                                        sample_rate=16000) as socket:
        for chunk in chunks[:20]:  # 2 s: "And so my fellow Americans," is under way
            await socket.send_media(chunk)
        await socket.send_finalize()
        await socket.send_keep_alive()
        async for message in socket:
            messages.append(message)
            if isinstance(message, ListenV1Results) and message.is_final:
                break
        await socket.send_close_stream()
        async for message in socket:
            messages.append(message)
    first = next(m for m in messages if isinstance(m, ListenV1Results))
    assert first.from_finalize and first.is_final and not first.speech_final
    assert "fellow" in first.channel.alternatives[0].transcript
    assert isinstance(messages[-1], ListenV1Metadata)


async def test_a_bad_key_is_deepgrams_401(compat_server: RunningServer) -> None:
    with pytest.raises(ApiError) as caught:
        async with client_for(compat_server, key="wrong").listen.v1.connect(model="nova-3"):
            pass
    assert caught.value.status_code == 401


@pytest.mark.parametrize(("query", "says"), [
    ("encoding=linear16&sample_rate=16000&diarize=maybe", "diarize"),
    ("encoding=linear16&sample_rate=16000&redact=pci", "redact"),
    ("encoding=opus&sample_rate=48000", "encoding"),
    ("model=nova-3", "raw audio"),
    ("encoding=linear16&sample_rate=16000&language=xx-yy-zz1", "language"),
    ("encoding=linear16&sample_rate=16000&no_such_option=1", "no_such_option"),
])
async def test_a_parameter_we_cannot_honour_is_deepgrams_400(
        compat_server: RunningServer, query: str, says: str) -> None:
    url = f"ws://127.0.0.1:{compat_server.port}/v1/listen?{query}"
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, additional_headers={"Authorization": f"Token {TOKEN}"}):
            pass
    response = caught.value.response
    assert response.status_code == 400
    body = json.loads(response.body)
    assert body["err_code"] == "Bad Request" and says in body["err_msg"]
    assert response.headers["dg-error"] == body["err_msg"][:200]
    assert response.headers["dg-request-id"] == body["request_id"]
    # The SDK turns the same refusal into its ApiError with the status.
    with pytest.raises(ApiError) as sdk:
        async with client_for(compat_server).listen.v1.connect(
                model="nova-3", encoding="linear16", sample_rate=16000, redact="pci"):
            pass
    assert sdk.value.status_code == 400


async def test_bad_messages_get_deepgrams_error_and_the_stream_goes_on(
        compat_server: RunningServer) -> None:
    url = (f"ws://127.0.0.1:{compat_server.port}/v1/listen?encoding=mulaw&sample_rate=8000"
           "&interim_results=false")
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await ws.send('{"type":"Shout"}')
        error = json.loads(await ws.recv())
        assert error["type"] == "Error" and "KeepAlive" in error["description"]
        await ws.send(b"\xff" * 800)  # μ-law silence
        await ws.send(json.dumps({"type": "CloseStream"}))
        last = json.loads(await ws.recv())
        assert last["type"] == "Metadata" and last["duration"] == pytest.approx(0.1, abs=0.01)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_the_port_still_answers_our_own_routes(compat_server: RunningServer) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{compat_server.port}/healthz")
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200
