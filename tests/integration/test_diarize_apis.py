"""Speakers through the compatible APIs and the file routes, with the real SDKs: Deepgram's
live `/v1/listen?diarize=true`, OpenAI's `diarized_json`, native `/v1/transcribe?diarize=true`.
Real model, real speaker encoder, real two-speaker speech."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from deepgram.listen.v1.types import ListenV1Results
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import read_wav
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.integration.test_compat_deepgram import listen
from tests.integration.test_transcribe import post
from tests.support.compat import CHUNK_S, PACE_S, TOKEN

pytestmark = pytest.mark.model

RATE = 16000
# Two CMU ARCTIC voices taking turns, half a second of silence between turns.
TURNS = ("arctic_aew_a0001", "arctic_axb_a0004", "arctic_aew_a0002")
TRUTH = ("S1", "S2", "S1")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="diarize-apis")
    yield running
    stop_server(running)


def conversation(gap_s: float = 0.5) -> np.ndarray:
    gap = np.zeros(int(gap_s * RATE), np.float32)
    parts: list[np.ndarray] = [gap]
    for name in TURNS:
        parts += [read_wav(name), gap]
    return np.concatenate([*parts, np.zeros(RATE, np.float32)])


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def wav_file(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm(audio))
    return out.getvalue()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_deepgram_sdk_words_carry_integer_speakers(server: RunningServer) -> None:
    data = pcm(conversation())
    step = int(CHUNK_S * RATE) * 2
    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    messages = await listen(server, chunks, PACE_S, diarize="true", punctuate="true")
    finals = [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]
    words = [w for r in finals for w in r.channel.alternatives[0].words]
    assert words, messages
    speakers = [w.speaker for w in words]
    assert all(isinstance(s, int) and s >= 0 for s in speakers), speakers
    assert speakers[0] == 0 and len(set(speakers)) >= 2, speakers
    assert all(r.channel_index == [0, 1] for r in finals)
    # Each final is one voice: its words share a speaker.
    assert all(len({w.speaker for w in r.channel.alternatives[0].words}) == 1
               for r in finals if r.channel.alternatives[0].words)


async def test_deepgram_refuses_a_diarize_that_is_not_a_flag(server: RunningServer) -> None:
    url = (f"ws://127.0.0.1:{server.port}/v1/listen?encoding=linear16&sample_rate=16000"
           "&diarize=maybe")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers={"Authorization": f"Token {TOKEN}"}):
            pass
    response = refused.value.response
    assert response.status_code == 400 and "diarize" in response.headers["dg-error"]
    assert json.loads(response.body)["err_code"] == "Bad Request"


def test_openai_sdk_gets_diarized_json(server: RunningServer) -> None:
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=TOKEN,
                           max_retries=0)
    answer: Any = client.audio.transcriptions.create(
        model="gpt-4o-transcribe-diarize", file=("talk.wav", wav_file(conversation())),
        response_format="diarized_json")
    assert type(answer).__name__ == "TranscriptionDiarized", type(answer)
    assert answer.task == "transcribe" and answer.duration > 8
    segments = answer.segments
    assert [s.type for s in segments] == ["transcript.text.segment"] * len(segments)
    assert [s.speaker for s in segments] == ["A", "B", "A"], segments
    assert all(s.start < s.end for s in segments) and len({s.id for s in segments}) == 3
    assert "author of the danger trail" in answer.text.lower()


def test_native_transcribe_labels_segments_and_words(server: RunningServer) -> None:
    status, kind, body = post(server, "/v1/transcribe?diarize=true&words=true",
                              wav_file(conversation()), auth())
    assert status == 200 and kind.startswith("application/json"), body
    answer = json.loads(body)
    labels = [s["speaker"] for s in answer["segments"]]
    assert labels == list(TRUTH), answer
    assert all(w["speaker"] == s["speaker"] for s in answer["segments"] for w in s["words"])
    # Off unless asked (the server's default is off): no speakers in the answer.
    status, _, body = post(server, "/v1/transcribe", wav_file(conversation()), auth())
    assert status == 200 and "speaker" not in json.loads(body)["segments"][0]


def test_native_transcribe_refuses_a_bad_diarize(server: RunningServer) -> None:
    status, _, body = post(server, "/v1/transcribe?diarize=perhaps",
                           wav_file(conversation()), auth())
    assert status == 400 and b"diarize" in body
