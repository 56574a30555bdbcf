"""Known voices with the real server and model: a voice enrolled from one recording names
that speaker on a stream of another recording, and after a restart (from the store)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from captioncast_client.audio_files import decode_pcm, rechunk, silence
from tests.conftest import speech_path
from tests.integration.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.model

ENROLLED = "arctic_aew_a0001"
SAME_VOICE = "arctic_aew_a0002"


def _request(server: RunningServer, method: str, path: str, body: bytes | None = None,
             content_type: str = "audio/wav") -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=body,
                                     headers={"Content-Type": content_type}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def _finals(server: RunningServer, recording: str) -> list[dict[str, Any]]:
    chunks = [*rechunk(decode_pcm(str(speech_path(recording))), 3200), silence(1.0)]
    async with connect(f"{server.url}/v1/stream?diarize=true&channel=enrolled") as ws:
        for chunk in chunks:  # in real time, as a live source: labels keep up with finals
            await ws.send(chunk)
            await asyncio.sleep(len(chunk) / 32000)
        await ws.send(json.dumps({"type": "eos"}))
        events = [json.loads(message) async for message in ws]
    return [e for e in events if e["type"] == "final" and e["text"]]


def test_an_enrolled_voice_is_named_on_a_stream_and_after_a_restart(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    server = start_server("--data-dir", data, name="enrollment")
    try:
        sample = speech_path(ENROLLED).read_bytes()
        status, voice = _request(server, "POST", "/v1/speakers?name=Alice", sample)
        assert status == 201, voice
        assert voice["name"] == "Alice" and voice["kept"] == "store"
        status, error = _request(server, "POST", "/v1/speakers?name=Alice", b"not audio")
        assert status == 400 and error["error"] == "bad_audio"
        finals = asyncio.run(_finals(server, SAME_VOICE))
        assert finals and finals[-1].get("speaker_name") == "Alice", [
            (f.get("speaker"), f.get("speaker_name")) for f in finals]
    finally:
        stop_server(server)
    server = start_server("--data-dir", data, name="enrollment-restarted")
    try:
        status, listed = _request(server, "GET", "/v1/speakers")
        assert status == 200 and [v["id"] for v in listed["speakers"]] == [voice["id"]]
        finals = asyncio.run(_finals(server, SAME_VOICE))
        # A new label (the restored S1 has no voiceprint), named by the enrolled voice.
        assert finals[-1].get("speaker_name") == "Alice", finals
        assert _request(server, "DELETE", f"/v1/speakers/{voice['id']}")[0] == 204
        assert _request(server, "GET", "/v1/speakers")[1]["speakers"] == []
    finally:
        stop_server(server)
