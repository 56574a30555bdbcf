"""Deepgram Flux at /v2/listen, driven by deepgram-sdk's `listen.v2` and by Pipecat's
DeepgramFluxSTTService; real model, real turn model, real speech."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from deepgram.core.api_error import ApiError
from deepgram.listen.v2.types import (
    ListenV2Configure,
    ListenV2ConfigureSuccess,
    ListenV2ConfigureThresholds,
    ListenV2Connected,
    ListenV2TurnInfo,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import read_wav, reference, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.integration.test_compat_deepgram import client_for
from tests.support.compat import CHUNK_S, LIVE_S, TOKEN

pytestmark = pytest.mark.model

FIRST, SECOND = "arctic_aew_a0001", "arctic_axb_a0004"  # two speakers' sentences
RATE = 16000


@pytest.fixture(scope="module")
def flux_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-flux")
    yield running
    stop_server(running)


def two_turns() -> list[bytes]:
    """Half a second of silence, a sentence, a pause of 1.5 s, another, 2 s of silence:
    a caller's two turns, as s16le chunks of CHUNK_S."""
    silence = [np.zeros(int(s * RATE), np.float32) for s in (0.5, 1.5, 2.0)]
    audio = np.concatenate([silence[0], read_wav(FIRST), silence[1], read_wav(SECOND),
                            silence[2]])
    pcm = (audio * 32767).astype("<i2").tobytes()
    step = int(CHUNK_S * RATE) * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


async def flux(server: RunningServer, chunks: list[bytes], first: Any = None,
               **query: Any) -> list[Any]:
    """Stream `chunks` in real time through the SDK's Flux client, `first` (a
    Configure) before them; every message it parsed."""
    messages: list[Any] = []
    async with client_for(server).listen.v2.connect(
            model="flux-general-en", encoding="linear16", sample_rate=RATE, **query) as socket:
        async def read() -> None:
            async for message in socket:
                messages.append(message)

        reader = asyncio.create_task(read())
        if first is not None:
            await socket.send_configure(first)
        for chunk in chunks:
            await socket.send_media(chunk)
            await asyncio.sleep(LIVE_S)
        await socket.send_close_stream()
        await asyncio.wait_for(reader, 120)
    return messages


async def test_sdk_hears_two_turns_and_configures_mid_stream(
        flux_server: RunningServer) -> None:
    configure = ListenV2Configure(thresholds=ListenV2ConfigureThresholds(eot_threshold=0.75),
                                  keyterms=["Philip Steels"])
    messages = await flux(flux_server, two_turns(), configure, eot_timeout_ms="4000")
    kinds = [type(m).__name__ for m in messages]
    assert all(not isinstance(m, dict | bytes) for m in messages), kinds  # all parsed
    assert isinstance(messages[0], ListenV2Connected), kinds
    success = messages[1]
    assert isinstance(success, ListenV2ConfigureSuccess), kinds
    assert success.thresholds.eot_threshold == 0.75
    assert success.thresholds.eot_timeout_ms == 4000
    assert success.keyterms == ["Philip Steels"]
    # sequence_id counts every message the server sent, from 0
    assert [m.sequence_id for m in messages] == list(range(len(messages)))
    assert len({m.request_id for m in messages}) == 1
    infos = [m for m in messages if isinstance(m, ListenV2TurnInfo)]
    for index, name in enumerate((FIRST, SECOND)):
        turn = [m for m in infos if m.turn_index == index]
        events = [m.event for m in turn]
        assert events[0] == "StartOfTurn" and events[-1] == "EndOfTurn", events
        assert "Update" in events, events
        end = turn[-1]
        assert wer(reference(name), end.transcript) <= 0.25, end.transcript
        assert [w.word for w in end.words] == end.transcript.split()
        assert all(0 <= w.confidence <= 1 for w in end.words)
        assert 0 <= end.audio_window_start < end.audio_window_end
        assert 0 <= end.end_of_turn_confidence <= 1
        assert end.trigger in ("model", "timeout")
    # the first turn ends before the second starts: the pause between them is 1.5 s
    first_end = next(i for i, m in enumerate(infos) if m.event == "EndOfTurn")
    assert all(m.turn_index == 0 for m in infos[:first_end + 1])
    assert infos[first_end].audio_window_end < 5.0 < infos[first_end + 1].audio_window_start


async def test_force_end_turn_ends_a_turn_the_model_would_not(
        flux_server: RunningServer) -> None:
    """eot_threshold=1.0 leaves the ending to the client: ForceEndTurn, trigger manual."""
    messages: list[Any] = []
    async with client_for(flux_server).listen.v2.connect(
            model="flux-general-en", encoding="linear16", sample_rate=RATE,
            eot_threshold="1.0", eot_timeout_ms="60000") as socket:
        async def read() -> None:
            async for message in socket:
                messages.append(message)

        reader = asyncio.create_task(read())
        chunks = two_turns()[:int(5.5 / CHUNK_S)]  # the first sentence and its pause
        for chunk in chunks:
            await socket.send_media(chunk)
            await asyncio.sleep(LIVE_S / 2)
        await asyncio.sleep(1.0)
        ends = [m for m in messages if isinstance(m, ListenV2TurnInfo)
                and m.event == "EndOfTurn"]
        assert not ends  # 1 s of silence, and the model may not end it
        await socket.send_force_end_turn()
        for _ in range(100):
            ends = [m for m in messages if isinstance(m, ListenV2TurnInfo)
                    and m.event == "EndOfTurn"]
            if ends:
                break
            await asyncio.sleep(0.1)
        await socket.send_close_stream()
        await asyncio.wait_for(reader, 60)
    assert len(ends) == 1 and ends[0].trigger == "manual", messages
    assert wer(reference(FIRST), ends[0].transcript) <= 0.25, ends[0].transcript


@pytest.mark.parametrize(("query", "says"), [
    ("eot_threshold=0.2", "eot_threshold must be between 0.5 and 1"),
    ("eager_eot_threshold=0.95", "eager_eot_threshold must be between 0.3 and 0.9"),
    ("eot_timeout_ms=90000", "eot_timeout_ms must be between 500 and 60000"),
    ("model=nova-3", "not a Flux model"),
])
async def test_bad_settings_are_refused_with_dg_error(flux_server: RunningServer,
                                                      query: str, says: str) -> None:
    name, value = query.split("=")
    asked = {"model": "flux-general-en", "encoding": "linear16", "sample_rate": "16000",
             name: value}
    url = f"ws://127.0.0.1:{flux_server.port}/v2/listen?{urlencode(asked)}"
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, additional_headers={"Authorization": f"Token {TOKEN}"}):
            pass
    response = caught.value.response
    assert response.status_code == 400
    body = json.loads(response.body)
    assert says in body["err_msg"] and response.headers["dg-error"] == body["err_msg"]
    with pytest.raises(ApiError) as sdk:  # the SDK says the status
        async with client_for(flux_server).listen.v2.connect(
                model="flux-general-en", encoding="linear16", sample_rate=RATE,
                eot_threshold="0.2"):
            pass
    assert sdk.value.status_code == 400


async def test_pipecat_flux_service_gets_the_turns_transcription(
        flux_server: RunningServer) -> None:
    """Pipecat's DeepgramFluxSTTService, pointed at us by its `url`, in a pipeline fed
    real speech frames (pipecat's own test runner, no transport)."""
    from pipecat.frames.frames import (
        ErrorFrame,
        InputAudioRawFrame,
        InterimTranscriptionFrame,
        TranscriptionFrame,
    )
    from pipecat.pipeline.task import PipelineParams
    from pipecat.services.deepgram.flux.stt import DeepgramFluxSTTService
    from pipecat.tests.utils import SleepFrame, run_test

    stt = DeepgramFluxSTTService(api_key=TOKEN,
                                 url=f"ws://127.0.0.1:{flux_server.port}/v2/listen")
    frames: list[Any] = []
    for chunk in two_turns()[:int(6.0 / CHUNK_S)]:  # the first turn, then silence
        frames += [InputAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1),
                   SleepFrame(LIVE_S)]
    frames.append(SleepFrame(2.0))
    down, up = await run_test(stt, frames_to_send=frames, start_timeout=10,
                              pipeline_params=PipelineParams(audio_in_sample_rate=RATE))
    assert not [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1 and finals[0].finalized, finals
    assert wer(reference(FIRST), finals[0].text) <= 0.25, finals[0].text
    assert any(isinstance(f, InterimTranscriptionFrame) for f in down)
