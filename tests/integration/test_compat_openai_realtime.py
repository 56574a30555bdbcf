"""OpenAI Realtime transcription at /v1/realtime, driven by the official openai SDK; real model."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeErrorEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import reference, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.support.compat import CLIP, LIVE_S, TOKEN, pcm_chunks

pytestmark = pytest.mark.model
Completed = ConversationItemInputAudioTranscriptionCompletedEvent
QUIET_S = 4.0  # no event for this long after the audio: the server has said everything


@pytest.fixture(scope="module")
def compat_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-realtime")
    yield running
    stop_server(running)


def client_for(server: RunningServer, key: str = TOKEN) -> AsyncOpenAI:
    """The SDK, with only its base URL changed."""
    return AsyncOpenAI(api_key=key, base_url=f"http://127.0.0.1:{server.port}/v1")


SESSION = {"type": "transcription", "audio": {"input": {
    "format": {"type": "audio/pcm", "rate": 24000},
    "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "Americans"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}


async def drain(connection: Any, events: list[Any], until: Any = None,
                timeout: float = QUIET_S) -> None:
    """Events into `events` until `until(event)` or `timeout` without one."""
    while True:
        try:
            event = await asyncio.wait_for(connection.recv(), timeout)
        except TimeoutError:
            return
        events.append(event)
        if until is not None and until(event):
            return


async def test_sdk_transcribes_a_recording_with_server_vad(compat_server: RunningServer) -> None:
    events: list[Any] = []
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        events.append(await connection.recv())
        await connection.session.update(session=SESSION)  # type: ignore[arg-type]
        events.append(await connection.recv())
        for sent, chunk in enumerate(pcm_chunks(rate=24000), 1):
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            if sent % 4 == 0:  # read as we go, as a live client does
                await drain(connection, events, timeout=LIVE_S * 4)
            else:
                await asyncio.sleep(LIVE_S)
        await drain(connection, events)
    kinds = [e.type for e in events]
    assert isinstance(events[0], SessionCreatedEvent), kinds
    assert isinstance(events[1], SessionUpdatedEvent), kinds
    session = events[1].session
    assert session.type == "transcription" and session.audio is not None
    assert session.audio.input is not None and session.audio.input.transcription is not None
    assert session.audio.input.transcription.language == "en"
    completed = [e for e in events if isinstance(e, Completed)]
    transcript = " ".join(e.transcript for e in completed)
    assert wer(reference(CLIP), transcript) <= 0.15, transcript
    assert len(completed) >= 2, kinds
    assert not any(isinstance(e, RealtimeErrorEvent) for e in events), events
    # Per item: speech_started, (deltas), speech_stopped, committed, (deltas), completed;
    # the deltas add up to the transcript (deltas only append: a final that corrects
    # what partials showed as stable is said whole in `completed` only).
    for done in completed:
        mine = [e for e in events if getattr(e, "item_id", None) == done.item_id]
        order = [e.type for e in mine]
        assert isinstance(mine[0], InputAudioBufferSpeechStartedEvent), order
        assert order[-1] == "conversation.item.input_audio_transcription.completed", order
        stopped_at = order.index("input_audio_buffer.speech_stopped")
        assert order[stopped_at + 1] == "input_audio_buffer.committed", order
        assert set(order[stopped_at + 2:-1]) <= {  # the rest of the text, as OpenAI's come
            "conversation.item.input_audio_transcription.delta"}, order
        deltas = [e.delta for e in mine
                  if isinstance(e, ConversationItemInputAudioTranscriptionDeltaEvent)]
        said = "".join(d or "" for d in deltas)
        if done.transcript.startswith(said):  # unless the final corrected the stable words
            assert said == done.transcript, (deltas, done.transcript)
        started, stopped = mine[0], next(e for e in mine
                                         if isinstance(e, InputAudioBufferSpeechStoppedEvent))
        assert 0 <= started.audio_start_ms < stopped.audio_end_ms <= 12_100
    deltas = [e for e in events if isinstance(e, ConversationItemInputAudioTranscriptionDeltaEvent)]
    first_words = {d.item_id: d.delta for d in reversed(deltas)}
    assert any(first_words.get(c.item_id) not in (None, c.transcript) for c in completed), \
        "no item had a delta before its final text (from partials)"
    commits = [e for e in events if isinstance(e, InputAudioBufferCommittedEvent)]
    assert commits[0].previous_item_id is None
    assert [c.previous_item_id for c in commits[1:]] == [c.item_id for c in commits[:-1]]


async def test_without_turn_detection_the_client_commits(compat_server: RunningServer) -> None:
    manual = json.loads(json.dumps(SESSION))
    manual["audio"]["input"]["turn_detection"] = None
    events: list[Any] = []
    chunks = pcm_chunks(rate=24000, trailing_silence_s=0)
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=manual)  # type: ignore[arg-type]
        await connection.input_audio_buffer.commit()  # nothing appended yet: an error
        for chunk in chunks[:20]:
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await connection.input_audio_buffer.commit()
        await drain(connection, events, until=lambda e: isinstance(e, Completed))
    kinds = [e.type for e in events]
    errors = [e for e in events if isinstance(e, RealtimeErrorEvent)]
    assert [e.error.code for e in errors] == ["input_audio_buffer_commit_empty"], kinds
    assert errors[0].error.type == "invalid_request_error"
    assert isinstance(events[-1], Completed) and "fellow" in events[-1].transcript, kinds
    assert not any(isinstance(e, InputAudioBufferSpeechStartedEvent) for e in events), kinds
    assert "input_audio_buffer.committed" in kinds


async def test_the_beta_transcription_session_shape(compat_server: RunningServer) -> None:
    events: list[Any] = []
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"},
            extra_headers={"OpenAI-Beta": "realtime=v1"}) as connection:
        created = json.loads(await connection.recv_bytes())
        await connection.send({  # type: ignore[arg-type]
            "type": "transcription_session.update",
            "session": {"input_audio_format": "pcm16",
                        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": {"type": "server_vad"}}})
        updated = json.loads(await connection.recv_bytes())
        for chunk in pcm_chunks(rate=24000):
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await drain(connection, events)
    assert created["type"] == "transcription_session.created"
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_format"] == "pcm16"
    transcript = " ".join(e.transcript for e in events if isinstance(e, Completed))
    assert wer(reference(CLIP), transcript) <= 0.15, transcript


async def test_bad_events_get_openais_error_and_the_session_goes_on(
        compat_server: RunningServer) -> None:
    events: list[Any] = []
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.recv()  # session.created
        bad = json.loads(json.dumps(SESSION))
        bad["audio"]["input"]["format"] = {"type": "audio/pcm", "rate": 16000}
        await connection.session.update(session=bad, event_id="evt_1")  # type: ignore[arg-type]
        await connection.send({"type": "response.create"})  # type: ignore[arg-type]
        await connection.send({"type": "input_audio_buffer.append", "audio": "%%%"})  # type: ignore[arg-type]
        await connection.session.update(session=SESSION)  # type: ignore[arg-type]
        await drain(connection, events, until=lambda e: isinstance(e, SessionUpdatedEvent))
    errors = [e for e in events if isinstance(e, RealtimeErrorEvent)]
    assert len(errors) == 3, events
    assert "24000" in errors[0].error.message and errors[0].error.event_id == "evt_1"
    assert "response.create" in errors[1].error.message
    assert "base64" in errors[2].error.message
    assert all(e.error.type == "invalid_request_error" for e in errors)
    assert isinstance(events[-1], SessionUpdatedEvent)


async def test_a_bad_key_or_a_conversation_session_is_refused(
        compat_server: RunningServer) -> None:
    url = f"ws://127.0.0.1:{compat_server.port}/v1/realtime"
    with pytest.raises(InvalidStatus) as caught:
        async with client_for(compat_server, key="wrong").realtime.connect(
                extra_query={"intent": "transcription"}):
            pass
    assert caught.value.response.status_code == 401
    assert json.loads(caught.value.response.body)["error"]["code"] == "invalid_api_key"
    with pytest.raises(InvalidStatus) as caught:
        async with connect(f"{url}?model=gpt-realtime",
                           additional_headers={"Authorization": f"Bearer {TOKEN}"}):
            pass
    assert caught.value.response.status_code == 400
    body = json.loads(caught.value.response.body)
    assert "intent=transcription" in body["error"]["message"]
