"""The speaker routes over a real socket, in-process: the scripted decoder, but the REAL
speaker encoder on REAL speech (an enrolled voice must name that voice on a stream)."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from captioncast.fanout.archive import StoreOptions
from captioncast.transport.security import SecurityOptions
from tests.conftest import read_wav, speech_path
from tests.support.inprocess import (
    DEADLINE_S,
    HttpAnswer,
    ScriptedServer,
    events_until,
    scripted_server,
    speech_frames,
)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENROLLED = "arctic_aew_a0001"  # one recording of a speaker...
SAME_VOICE = "arctic_aew_a0002"  # ...and another of the same speaker


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ScriptedServer]:
    async with scripted_server(security=SecurityOptions(tokens=(TOKEN,)),
                               store=StoreOptions(where=str(tmp_path / "data"))) as running:
        yield running


async def call(server: ScriptedServer, method: str, path: str, body: bytes = b"",
               content_type: str = "application/json", token: bool = True) -> HttpAnswer:
    headers = {"Content-Type": content_type, **(AUTH if token else {})}
    # A GET has no body: websockets answers the GETs, and takes none.
    request = urllib.request.Request(server.http_url + path,
                                     data=None if method == "GET" else body or None,
                                     headers=headers, method=method)

    def fetch() -> HttpAnswer:
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
                return HttpAnswer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return HttpAnswer(error.code, dict(error.headers), error.read())

    return await asyncio.to_thread(fetch)


def wav_bytes(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def form(name: str | None, file: bytes, filename: str = "sample.wav") -> tuple[bytes, str]:
    boundary = "captioncast-test-boundary"
    parts = []
    if name is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
                     f"{name}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + file + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def enroll(server: ScriptedServer, name: str, recording: str = ENROLLED) -> HttpAnswer:
    body = speech_path(recording).read_bytes()
    return await call(server, "POST", f"/v1/speakers?name={name}", body, "audio/wav")


async def speak(server: ScriptedServer, channel: str, recording: str) -> list[dict[str, Any]]:
    url = f"{server.ws_url}/v1/stream?channel={channel}&diarize=true&token={TOKEN}"
    async with connect(url) as ws:
        for frame in speech_frames(recording):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "eos"}))
        return await events_until(ws, "end")


async def test_every_speaker_route_needs_the_token(server: ScriptedServer) -> None:
    for method, path in (("GET", "/v1/speakers"), ("POST", "/v1/speakers?name=A"),
                         ("DELETE", "/v1/speakers/v_1"), ("GET", "/v1/channels/a/speakers"),
                         ("PUT", "/v1/channels/a/speakers/S1")):
        answer = await call(server, method, path, b'{"name":"A"}', token=False)
        assert answer.status == 401, (method, path)


async def test_an_enrolled_voice_names_that_voice_on_a_stream(server: ScriptedServer) -> None:
    answer = await enroll(server, "Alice")
    assert answer.status == 201, answer.body
    voice = answer.json()
    assert voice["id"].startswith("v_") and voice["name"] == "Alice"
    assert voice["kept"] == "store" and 2.0 < voice["seconds"] < 4.5
    assert answer.headers["Location"] == f"/v1/speakers/{voice['id']}"
    listed = (await call(server, "GET", "/v1/speakers")).json()
    assert listed["speakers"] == [{k: voice[k] for k in ("id", "name", "created", "seconds")}]
    assert "embedding" not in json.dumps(listed)  # the voiceprint never leaves the server

    events = await speak(server, "talk", SAME_VOICE)
    finals = [e for e in events if e["type"] == "final" and e["text"]]
    assert finals and all(f["speaker"] == "S1" for f in finals)
    assert finals[-1]["speaker_name"] == "Alice"


async def test_a_voice_enrolled_from_a_form_is_deleted_for_good(
        server: ScriptedServer, tmp_path: Path) -> None:
    body, content_type = form("Bob  Smith", speech_path(ENROLLED).read_bytes())
    answer = await call(server, "POST", "/v1/speakers", body, content_type)
    assert answer.status == 201, answer.body
    voice = answer.json()
    assert voice["name"] == "Bob Smith"  # a name is one line, single-spaced
    assert (await call(server, "DELETE", f"/v1/speakers/{voice['id']}")).status == 204
    assert (await call(server, "GET", "/v1/speakers")).json()["speakers"] == []
    again = await call(server, "DELETE", f"/v1/speakers/{voice['id']}")
    assert again.status == 404 and again.json()["error"] == "not_found"
    # Deleted, the voice names nobody.
    events = await speak(server, "after", SAME_VOICE)
    assert not any("speaker_name" in e for e in events if e["type"] == "final")


@pytest.mark.parametrize(("body", "content_type", "query", "status", "says"), [
    (wav_bytes(np.zeros(32000, np.float32)), "audio/wav", "?name=A", 400, "no voice"),
    (wav_bytes(read_wav(ENROLLED)[8000:16000]), "audio/wav", "?name=A", 400, "1.5 s"),
    (b"this is not audio at all\n" * 40, "audio/wav", "?name=A", 400, "not an audio file"),
    (b"name=A", "text/plain", "?name=A", 415, "multipart/form-data"),
    (b"RIFF", "audio/wav", "", 400, "speaker name"),
    (b"RIFF", "audio/wav", "?name=", 400, "speaker name"),
    (b"RIFF", "audio/wav", "?name=" + "x" * 65, 400, "at most 64"),
    (b"", "audio/wav", "?name=A", 400, "empty body"),
])
async def test_a_bad_sample_is_a_clear_error(server: ScriptedServer, body: bytes,
                                             content_type: str, query: str, status: int,
                                             says: str) -> None:
    answer = await call(server, "POST", "/v1/speakers" + query, body, content_type)
    assert answer.status == status, answer.body
    assert says in answer.json()["message"]
    assert (await server.get("/healthz")).status == 200  # the server goes on
    assert (await call(server, "GET", "/v1/speakers")).json()["speakers"] == []


async def test_bad_forms_and_huge_samples_are_refused(server: ScriptedServer) -> None:
    text, content_type = form("Alice", b"hello, I am a text file\n" * 50, "notes.txt")
    answer = await call(server, "POST", "/v1/speakers", text, content_type)
    assert answer.status == 400 and "not an audio file" in answer.json()["message"]
    nameless, content_type = form(None, speech_path(ENROLLED).read_bytes())
    answer = await call(server, "POST", "/v1/speakers", nameless, content_type)
    assert answer.status == 400 and "name" in answer.json()["message"]
    huge = await call(server, "POST", "/v1/speakers?name=A", b"\0" * (11 * 1024 * 1024),
                      "audio/wav")
    assert huge.status == 413


async def test_naming_a_channels_speaker_reaches_its_viewers(server: ScriptedServer) -> None:
    missing = await call(server, "PUT", "/v1/channels/talk/speakers/S1", b'{"name":"Bob"}')
    assert missing.status == 404 and "no speakers" in missing.json()["message"]
    await speak(server, "talk", SAME_VOICE)
    table = (await call(server, "GET", "/v1/channels/talk/speakers")).json()
    assert table == {"channel": "talk", "speakers": [{"id": "S1"}]}

    url = f"{server.ws_url}/v1/captions?channel=talk&since=0&token={TOKEN}"
    async with connect(url) as viewer:
        await events_until(viewer, "end")  # the replay of the channel so far
        answer = await call(server, "PUT", "/v1/channels/talk/speakers/S1",
                            b'{"name": "Bob"}')
        assert answer.status == 200, answer.body
        assert answer.json() == {"channel": "talk", "speakers": [{"id": "S1", "name": "Bob"}]}
        async with asyncio.timeout(DEADLINE_S):  # nobody speaks: the hub says it
            while (event := json.loads(await viewer.recv()))["type"] != "speakers" \
                    or event["speakers"] != [{"id": "S1", "name": "Bob"}]:
                pass
    assert (await call(server, "GET", "/v1/channels/talk/speakers")).json()["speakers"] == [
        {"id": "S1", "name": "Bob"}]

    for body, path, status in (
            (b'{"name":"Bob"}', "/v1/channels/talk/speakers/S9", 404),
            (b'{"name":"Bob"}', "/v1/channels/talk/speakers/X1", 400),
            (b"Bob", "/v1/channels/talk/speakers/S1", 400),
            (b'["Bob"]', "/v1/channels/talk/speakers/S1", 400),
            (b'{"name":""}', "/v1/channels/talk/speakers/S1", 400),
            (b'{"name":"' + b"x" * 65 + b'"}', "/v1/channels/talk/speakers/S1", 400)):
        answer = await call(server, "PUT", path, body)
        assert answer.status == status, (path, body, answer.body)


async def test_diarize_must_be_a_boolean(server: ScriptedServer) -> None:
    async with connect(f"{server.ws_url}/v1/stream?diarize=maybe&token={TOKEN}") as ws:
        error = json.loads(await ws.recv())
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert "diarize" in error["message"]


async def test_naming_while_a_session_speaks_goes_through_that_session(
        server: ScriptedServer) -> None:
    url = f"{server.ws_url}/v1/stream?channel=live&diarize=true&token={TOKEN}"
    async with connect(url) as ws:
        for frame in speech_frames(SAME_VOICE):
            await ws.send(frame)
        await ws.send(json.dumps({"type": "flush"}))
        heard = await events_until(ws, "final")
        assert heard[-1]["speaker"] == "S1"
        answer = await call(server, "PUT", "/v1/channels/live/speakers/S1", b'{"name":"Eve"}')
        assert answer.status == 200, answer.body
        # The speaking client gets the table from its own session, in its own numbering.
        async with asyncio.timeout(DEADLINE_S):
            while (event := json.loads(await ws.recv()))["type"] != "speakers" \
                    or event["speakers"] != [{"id": "S1", "name": "Eve"}]:
                pass
        await ws.send(json.dumps({"type": "eos"}))
        await events_until(ws, "end")
