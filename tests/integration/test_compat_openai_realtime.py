"""OpenAI Realtime transcription at /v1/realtime, driven by the official openai SDK; real model."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.beta.realtime import ConversationItemCreatedEvent as BetaItemCreated
from openai.types.beta.realtime import InputAudioBufferCommittedEvent as BetaCommitted
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeConversationItemUserMessage,
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
Delta = ConversationItemInputAudioTranscriptionDeltaEvent
COMPLETED = "conversation.item.input_audio_transcription.completed"
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
    # The GA shape: each commit adds the user's item (conversation.item.added), and the
    # item is done, with its transcript, once that is complete (conversation.item.done).
    for commit in commits:
        added = events[events.index(commit) + 1]
        assert isinstance(added, ConversationItemAdded), kinds
        assert isinstance(added.item, RealtimeConversationItemUserMessage)
        assert added.item.id == commit.item_id and added.item.content[0].type == "input_audio"
        assert added.previous_item_id == commit.previous_item_id
    for done in completed:
        finished = events[events.index(done) + 1]
        assert isinstance(finished, ConversationItemDone), kinds
        assert isinstance(finished.item, RealtimeConversationItemUserMessage)
        assert finished.item.id == done.item_id
        assert finished.item.content[0].transcript == done.transcript


MANUAL = json.loads(json.dumps(SESSION))
MANUAL["audio"]["input"]["turn_detection"] = None
GOLDEN = "libri_test_61-70968-0002"  # 3 s: "A golden fortune and a happy life"
EIGHTEEN = "ljspeech_LJ002-0020"  # 1.5 s: "In eighteen thirteen"


async def append_all(connection: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())


def count(kind: type, wanted: int) -> Any:
    """A drain condition: `wanted` events of `kind` seen (conversation.item.done follows
    completed in the GA shape)."""
    seen = 0

    def enough(event: Any) -> bool:
        nonlocal seen
        seen += isinstance(event, kind)
        return seen >= wanted
    return enough


def item_events(events: list[Any], item: str) -> list[str]:
    """The types of the events that speak of `item`, in order."""
    return [e.type for e in events
            if getattr(e, "item_id", None) == item or getattr(getattr(e, "item", None), "id",
                                                              None) == item]


async def test_without_turn_detection_each_commit_is_one_item(
        compat_server: RunningServer) -> None:
    """OpenAI's manual mode: the client's commit ends a turn; all the audio appended
    since the last commit is one item, however many pauses it has; no VAD events."""
    events: list[Any] = []
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=MANUAL)  # type: ignore[arg-type]
        await connection.input_audio_buffer.commit(event_id="evt_early")  # nothing yet
        await append_all(connection, pcm_chunks(rate=24000, trailing_silence_s=0))
        await connection.input_audio_buffer.commit()
        await connection.input_audio_buffer.commit(event_id="evt_again")  # nothing since
        await append_all(connection, pcm_chunks(GOLDEN, rate=24000, trailing_silence_s=0.3))
        await connection.input_audio_buffer.commit()
        await drain(connection, events, until=count(ConversationItemDone, 2), timeout=60)
        await drain(connection, events, timeout=1.0)  # and nothing more
    kinds = [e.type for e in events]
    errors = [e for e in events if isinstance(e, RealtimeErrorEvent)]
    assert [(e.error.code, e.error.event_id) for e in errors] == [
        ("input_audio_buffer_commit_empty", "evt_early"),
        ("input_audio_buffer_commit_empty", "evt_again")], kinds
    assert all(e.error.type == "invalid_request_error" for e in errors)
    assert not any(isinstance(e, InputAudioBufferSpeechStartedEvent |
                              InputAudioBufferSpeechStoppedEvent) for e in events), kinds
    commits = [e for e in events if isinstance(e, InputAudioBufferCommittedEvent)]
    assert len(commits) == 2, kinds  # the four utterances of the recording are one item
    assert commits[0].previous_item_id is None
    assert commits[1].previous_item_id == commits[0].item_id
    completed = [e for e in events if isinstance(e, Completed)]
    assert [c.item_id for c in completed] == [c.item_id for c in commits], kinds
    assert wer(reference(CLIP), completed[0].transcript) <= 0.15, completed[0].transcript
    assert wer(reference(GOLDEN), completed[1].transcript) <= 0.15, completed[1].transcript
    assert completed[0].usage.type == "duration"
    assert completed[0].usage.seconds == pytest.approx(11.0, abs=0.1)
    for commit, done in zip(commits, completed, strict=True):
        order = item_events(events, commit.item_id)
        assert order[:2] == ["input_audio_buffer.committed", "conversation.item.added"], order
        assert order[-2:] == ["conversation.item.input_audio_transcription.completed",
                              "conversation.item.done"], order
        assert set(order[2:-2]) == {"conversation.item.input_audio_transcription.delta"}
        deltas = [e.delta for e in events if isinstance(e, Delta) and e.item_id == done.item_id]
        assert "".join(deltas) == done.transcript, deltas
        added = next(e for e in events if isinstance(e, ConversationItemAdded)
                     and e.item.id == commit.item_id)
        finished = next(e for e in events if isinstance(e, ConversationItemDone)
                        and e.item.id == commit.item_id)
        for item in (added.item, finished.item):
            assert isinstance(item, RealtimeConversationItemUserMessage), item
            assert item.role == "user" and item.content[0].type == "input_audio"
        assert added.previous_item_id == commit.previous_item_id
        assert finished.item.content[0].transcript == done.transcript


async def test_clear_drops_only_the_audio_not_yet_committed(
        compat_server: RunningServer) -> None:
    """Without turn detection: a clear after a commit drops what came after it; the
    committed item, still being transcribed, completes."""
    events: list[Any] = []
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=MANUAL)  # type: ignore[arg-type]
        await append_all(connection, pcm_chunks(rate=24000, trailing_silence_s=0))
        await connection.input_audio_buffer.commit()
        await append_all(connection, pcm_chunks(GOLDEN, rate=24000)[:15])  # "A golden fortune"
        await connection.input_audio_buffer.clear()
        await append_all(connection, pcm_chunks(EIGHTEEN, rate=24000, trailing_silence_s=0.3))
        await connection.input_audio_buffer.commit()
        await drain(connection, events, until=count(ConversationItemDone, 2), timeout=60)
        await drain(connection, events, timeout=1.0)
    kinds = [e.type for e in events]
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(completed) == 2, kinds
    assert wer(reference(CLIP), completed[0].transcript) <= 0.15, completed[0].transcript
    assert wer(reference(EIGHTEEN), completed[1].transcript) <= 0.15, completed[1].transcript
    said = " ".join([*(c.transcript for c in completed),
                     *(e.delta or "" for e in events if isinstance(e, Delta))]).lower()
    assert "golden" not in said and "fortune" not in said, said
    # The clear came while the first item was still being transcribed, and it kept it.
    assert kinds.index("input_audio_buffer.cleared") < events.index(completed[0]), kinds
    commits = [e for e in events if isinstance(e, InputAudioBufferCommittedEvent)]
    assert [c.previous_item_id for c in commits] == [None, commits[0].item_id]
    assert completed[1].usage.seconds == pytest.approx(1.84, abs=0.1)  # cleared audio not in it


async def test_clear_with_server_vad_drops_the_utterance_under_way(
        compat_server: RunningServer) -> None:
    """With server_vad an utterance the VAD ended is committed; clear drops only the one
    still being spoken."""
    events: list[Any] = []
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=SESSION)  # type: ignore[arg-type]
        await append_all(connection, pcm_chunks(GOLDEN, rate=24000, trailing_silence_s=1.0))
        await append_all(connection, pcm_chunks(rate=24000)[:20])  # "And so my fellow Amer-"
        await connection.input_audio_buffer.clear()
        await append_all(connection, [bytes(4800)] * 10)  # 1 s of silence
        await append_all(connection, pcm_chunks(EIGHTEEN, rate=24000, trailing_silence_s=1.0))
        await drain(connection, events, until=count(ConversationItemDone, 2), timeout=60)
        await drain(connection, events, timeout=QUIET_S)
    kinds = [e.type for e in events]
    assert "input_audio_buffer.cleared" in kinds
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(completed) == 2, kinds
    assert wer(reference(GOLDEN), completed[0].transcript) <= 0.15, completed[0].transcript
    assert wer(reference(EIGHTEEN), completed[1].transcript) <= 0.15, completed[1].transcript
    commits = [e for e in events if isinstance(e, InputAudioBufferCommittedEvent)]
    assert [c.item_id for c in commits] == [c.item_id for c in completed], kinds
    said = " ".join(e.delta or "" for e in events if isinstance(e, Delta)).lower()
    assert "fellow" not in said and "americans" not in said, said


async def test_the_beta_transcription_session_shape(compat_server: RunningServer) -> None:
    raw: list[dict[str, Any]] = []
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
        await append_all(connection, pcm_chunks(rate=24000))
        while True:
            try:
                raw.append(json.loads(await asyncio.wait_for(connection.recv_bytes(), QUIET_S)))
            except TimeoutError:
                break
    assert created["type"] == "transcription_session.created"
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_format"] == "pcm16"
    transcript = " ".join(e["transcript"] for e in raw if e["type"] == COMPLETED)
    assert wer(reference(CLIP), transcript) <= 0.15, transcript
    # The beta shape: each commit is followed by conversation.item.created, with the
    # user's item (the beta API has no conversation.item.added or .done).
    kinds = [e["type"] for e in raw]
    assert not {"conversation.item.added", "conversation.item.done"} & set(kinds), kinds
    commits = [at for at, kind in enumerate(kinds) if kind == "input_audio_buffer.committed"]
    assert len(commits) >= 2, kinds
    for at in commits:
        commit = BetaCommitted.model_validate(raw[at])
        created_item = BetaItemCreated.model_validate(raw[at + 1])
        assert created_item.item.id == commit.item_id and created_item.item.role == "user"
        assert created_item.item.content is not None
        assert created_item.item.content[0].type == "input_audio"
        assert created_item.previous_item_id == commit.previous_item_id


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


async def test_a_commit_with_server_vad_ends_the_utterance_under_way(
        compat_server: RunningServer) -> None:
    """OpenAI commits the buffer when the client asks, VAD or not: the item under way ends
    there; a commit with no speech since the last is commit_empty."""
    events: list[Any] = []
    chunks = pcm_chunks(rate=24000, trailing_silence_s=0)
    async with client_for(compat_server).realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=SESSION)  # type: ignore[arg-type]
        await connection.input_audio_buffer.commit(event_id="evt_none")  # nothing yet
        await append_all(connection, chunks[:20])  # 2 s: "And so my fellow Americans"
        await connection.input_audio_buffer.commit()
        await drain(connection, events, until=count(Completed, 1), timeout=60)
    kinds = [e.type for e in events]
    errors = [e for e in events if isinstance(e, RealtimeErrorEvent)]
    assert [(e.error.code, e.error.event_id) for e in errors] == [
        ("input_audio_buffer_commit_empty", "evt_none")], kinds
    done = next(e for e in events if isinstance(e, Completed))
    said = done.transcript.lower()
    assert "fellow" in said and "country" not in said, said  # cut at the commit
    order = item_events(events, done.item_id)
    assert order.index("input_audio_buffer.speech_stopped") \
        < order.index("input_audio_buffer.committed"), order
