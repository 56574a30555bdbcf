"""The transcript store under the real server and model: SIGKILL mid-stream and a restart
on the same store, a corrupt database at start, PostgreSQL stopped mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from captioncast.cli import EXIT_USAGE
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from captioncast_client.viewing import captions_url
from tests.conftest import speech_path
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.integration.postgres import Postgres, why_not

pytestmark = pytest.mark.model

CHUNK_S = 0.1  # 3200 bytes of 16 kHz s16le


def _audio(*names: str) -> list[bytes]:
    chunks: list[bytes] = []
    for name in names:
        chunks += [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]
    return chunks


def _get(server: RunningServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _transcript(server: RunningServer, channel: str) -> list[dict[str, Any]]:
    status, body = _get(server, f"/v1/channels/{channel}/transcript?format=json")
    assert status == 200, body
    finals: list[dict[str, Any]] = json.loads(body)["finals"]
    return finals


async def _viewer(url: str, events: list[dict[str, Any]], finals_then: int = 0,
                  then: Any = None) -> None:
    """Collect a channel's events until `end` or the connection goes; call `then` at once
    (nothing else runs between) when the `finals_then`-th final arrives."""
    with contextlib.suppress(ConnectionClosed, OSError):
        async with connect(url, max_queue=None) as ws:
            async for message in ws:
                event = json.loads(message)
                events.append(event)
                finals = [e for e in events if e["type"] == "final" and e["text"]]
                if then is not None and len(finals) == finals_then:
                    then()
                    then = None
                if event["type"] == "end":
                    return


async def _speaker(url: str, chunks: list[bytes], events: list[dict[str, Any]]) -> None:
    """A raw speaker (no resume): real-time audio until the server goes away."""
    with contextlib.suppress(ConnectionClosed, OSError):
        async with connect(url, max_queue=None) as ws:
            async def receive() -> None:
                async for message in ws:
                    events.append(json.loads(message))

            receiver = asyncio.create_task(receive())
            for chunk in chunks:
                await ws.send(chunk)
                await asyncio.sleep(CHUNK_S)
            await ws.send(json.dumps({"type": "eos"}))
            await receiver


def _finals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "final" and e["text"]]


async def test_sigkill_mid_stream_loses_no_final_and_seq_continues(tmp_path: Path) -> None:
    channel = f"lecture-{secrets.token_hex(3)}"
    data = ("--data-dir", str(tmp_path / "data"))
    first = start_server(*data, name="store-kill")
    seen: list[dict[str, Any]] = []
    spoken: list[dict[str, Any]] = []
    try:
        viewer = asyncio.create_task(_viewer(captions_url(first.url, channel), seen,
                                             finals_then=2, then=first.process.kill))
        await asyncio.sleep(0.5)  # subscribed before the speaker starts
        chunks = _audio("whisper_jfk", "libri_dev_2412-153948-0000", "whisper_jfk")
        speaker = asyncio.create_task(
            _speaker(stream_url(first.url, channel=channel), chunks, spoken))
        await asyncio.wait_for(viewer, 120)
        await asyncio.wait_for(speaker, 30)
    finally:
        first.process.kill()
        first.process.wait()
    assert first.process.returncode == -9
    assert len(_finals(seen)) == 2 and _finals(spoken), "killed mid-stream, after 2 finals"

    second = start_server(*data, name="store-kill-again")
    try:
        stored = _transcript(second, channel)
        by_seq = {f["seq"]: f for f in stored}
        # every final a client received before the kill is in the transcript
        for final in _finals(seen):
            assert by_seq[final["seq"]]["text"] == final["text"]
        stored_texts = [f["text"] for f in stored if f["text"]]
        assert [f["text"] for f in _finals(spoken)] == stored_texts[:len(_finals(spoken))]

        # a new session on the channel continues it: seq, utterances, the clock
        last_seen = max(e["seq"] for e in seen)
        after: list[dict[str, Any]] = []
        viewer = asyncio.create_task(_viewer(captions_url(second.url, channel,
                                                          since=last_seen), after))
        await asyncio.sleep(0.5)
        result = await stream(stream_url(second.url, channel=channel), _audio("whisper_jfk"),
                              reconnect=False)
        await asyncio.wait_for(viewer, 60)
        assert _finals(result.finals)
        # the viewer's `since` kept its meaning: the stored finals it missed, then the
        # new session's events, numbered after everything it saw before the kill
        missed = [f for f in stored if f["seq"] > last_seen]
        assert [f["text"] for f in _finals(after)][:len(missed)] == [f["text"] for f in missed]
        assert min(e["seq"] for e in after) > last_seen
        whole = _transcript(second, channel)
        seqs = [f["seq"] for f in whole]
        assert seqs == sorted(set(seqs))
        said_again = [f["text"] for f in result.finals if f["text"]]
        assert [f["text"] for f in whole if f["text"]] == stored_texts + said_again
        old_utterances = max(f["utterance"] for f in stored)
        new = whole[len(stored):]
        assert min(f["utterance"] for f in new) > old_utterances
        assert min(f["start"] for f in new) >= max(f["end"] for f in stored) - 0.01
        # the caption file covers the whole channel
        status, vtt = _get(second, f"/v1/channels/{channel}/captions.vtt")
        assert status == 200 and " ".join(vtt.split()).count("fellow") >= 2
        status, body = _get(second, "/v1/channels")
        listed = {c["channel"]: c for c in json.loads(body)["channels"]}
        assert listed[channel]["finals"] == len(whole) and listed[channel]["sessions"] == 2
        assert listed[channel]["live"] is False and listed[channel]["duration"] > 15
    finally:
        stop_server(second)


def test_a_corrupt_database_is_a_clear_error_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "transcripts.sqlite3"
    broken.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    done = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "serve", "--port", "0", "--store",
         str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_USAGE
    assert "cannot open the transcript store" in done.stderr and str(broken) in done.stderr
    assert "Traceback" not in done.stderr
    assert broken.read_bytes().startswith(b"this is not a database")  # left as it was


@pytest.mark.skipif(why_not() is not None, reason=str(why_not()))
async def test_postgres_stopped_mid_stream_captions_go_on_and_writes_resume() -> None:
    postgres = Postgres()
    postgres.start()
    channel = f"pg-{secrets.token_hex(3)}"
    server = start_server("--store", postgres.url(), name="store-postgres")
    try:
        seen: list[dict[str, Any]] = []
        stopped: list[float] = []

        def stop_postgres() -> None:
            stopped.append(time.monotonic())
            asyncio.get_running_loop().run_in_executor(None, postgres.stop, "immediate")

        viewer = asyncio.create_task(_viewer(captions_url(server.url, channel), seen,
                                             finals_then=1, then=stop_postgres))
        await asyncio.sleep(0.5)
        arrived: list[float] = []
        result = await stream(stream_url(server.url, channel=channel),
                              _audio("whisper_jfk", "libri_dev_2412-153948-0000"),
                              reconnect=False,
                              on_event=lambda e: arrived.append(time.monotonic()))
        await asyncio.wait_for(viewer, 60)
        # captions went on while the store was away: finals after the stop, to both
        assert stopped and any(t > stopped[0] + 1.0 for t in arrived)
        assert [f["text"] for f in _finals(seen)] == [f["text"] for f in result.finals
                                                      if f["text"]]
        _, body = _get(server, "/healthz")
        health = json.loads(body)["store"]
        assert health["status"] == "degraded" and health["queued"] > 0, health
        assert health["last_error"]

        await asyncio.to_thread(postgres.start)
        deadline = time.monotonic() + 60
        while True:
            health = json.loads(_get(server, "/healthz")[1])["store"]
            if health["status"] == "ok" and health["queued"] == 0:
                break
            assert time.monotonic() < deadline, health
            await asyncio.sleep(0.5)
        assert health["dropped"] == 0
        stored = _transcript(server, channel)
        assert [f["text"] for f in stored] == [f["text"] for f in _finals(seen)]
        assert [f["seq"] for f in stored] == [f["seq"] for f in _finals(seen)]
        _, metrics = _get(server, "/metrics")
        assert "captioncast_store_late_total" in metrics
    finally:
        stop_server(server)
        postgres.remove()
