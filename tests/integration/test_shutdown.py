"""SIGTERM in the middle of a sentence: the sentence still gets its final, then `end`, 1001."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from captioncast_client.audio_files import decode_pcm, rechunk
from tests.conftest import speech_path
from tests.integration import rawws
from tests.integration.broker import Mosquitto
from tests.integration.conftest import RunningServer, start_server
from tests.integration.test_mqtt import Subscriber

pytestmark = pytest.mark.model

SHUTDOWN_TIMEOUT_S = 10.0
CHUNK = 3200  # 100 ms


async def _speak(url: str, events: list[dict[str, Any]], interrupted: asyncio.Event) -> int | None:
    """Stream the long monologue in real time until the server closes; return its close code."""
    chunks = list(rechunk(decode_pcm(str(speech_path("long_mfa_spontaneous_3"))), CHUNK))
    async with connect(url) as ws:
        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                event["at"] = time.monotonic()
                events.append(event)
                finals = {e["utterance"] for e in events if e["type"] == "final"}
                if (event["type"] == "partial" and event["utterance"] not in finals
                        and len(event["text"].split()) >= 3 and len(finals) >= 1):
                    interrupted.set()  # well into the second sentence or later

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        try:
            for i, chunk in enumerate(chunks):
                await asyncio.sleep(max(0.0, started + i * 0.1 - time.monotonic()))
                await ws.send(chunk)
        except ConnectionClosed:
            pass  # a live source keeps talking until the server goes
        await asyncio.wait_for(receiver, 30)
        return ws.close_code


def _health(server: RunningServer) -> tuple[int, str] | None:
    try:
        status, body = server.health()
        return status, str(body.get("status"))
    except OSError:
        return None


async def test_sigterm_finalizes_the_sentence_in_progress_then_ends_and_exits(
        ) -> None:
    server = start_server("--shutdown-timeout-s", str(SHUTDOWN_TIMEOUT_S), name="shutdown")
    try:
        events: list[dict[str, Any]] = []
        interrupted = asyncio.Event()
        speaker = asyncio.create_task(_speak(f"{server.url}/v1/stream", events, interrupted))
        await asyncio.wait_for(interrupted.wait(), 60)
        in_progress = max(e["utterance"] for e in events if e["type"] == "partial")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        # While it drains: /healthz says so, and a new stream is turned away.
        seen: list[tuple[int, str]] = []
        refused: dict[str, Any] | None = None
        refused_code: int | None = None
        while server.process.poll() is None and time.monotonic() - signalled < 15:
            answer = await asyncio.to_thread(_health, server)
            if answer is None:
                break
            seen.append(answer)
            if answer[0] == 503 and refused is None:
                try:
                    async with connect(f"{server.url}/v1/stream", open_timeout=2) as late:
                        refused = json.loads(await asyncio.wait_for(late.recv(), 5))
                        await asyncio.wait_for(late.wait_closed(), 5)
                        refused_code = late.close_code
                except (OSError, TimeoutError, ConnectionClosed):
                    pass  # the drain ended first
            await asyncio.sleep(0.02)

        close_code = await asyncio.wait_for(speaker, 30)
        exit_code = await asyncio.to_thread(server.process.wait, 30)
        exited_after = time.monotonic() - signalled
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()

    after = [e for e in events if e["at"] >= signalled]
    finals = [e for e in events if e["type"] == "final"]
    last_final = next(f for f in finals if f["utterance"] == in_progress)
    assert last_final["text"].strip(), last_final  # the interrupted sentence, decoded
    assert last_final in after
    assert events[-1]["type"] == "end" and events[-1]["utterances"] == len(finals)
    assert [f["utterance"] for f in finals] == list(range(len(finals)))
    assert close_code == 1001
    assert exit_code == 0
    assert exited_after <= SHUTDOWN_TIMEOUT_S + 2, exited_after
    assert seen and all(status == 503 and state == "draining" for status, state in seen), seen
    if refused is not None:
        assert refused["code"] == "overloaded" and refused_code == 1013
    log = server.log.read_text()
    assert "event=draining sessions=1" in log and "unfinished=0" in log
    print(f"exit {exited_after:.2f} s after SIGTERM; final of utterance {in_progress}: "
          f"{last_final['text']!r}; healthz during the drain: {seen[:3]}")


async def test_a_stuck_client_cannot_hold_the_shutdown_past_its_timeout() -> None:
    """A client that reads nothing cannot finish its close; the process still exits in time,
    and a viewer still gets the speaker's `end`."""
    timeout_s = 6.0
    server = start_server("--shutdown-timeout-s", str(timeout_s), name="shutdown-stuck")
    try:
        stuck, head = rawws.open_raw(server.port, "/v1/stream", timeout=30)
        assert b" 101 " in head.split(b"\r\n")[0]

        # Speech, and nothing read: its close handshake will never be answered.
        for chunk in rechunk(decode_pcm(str(speech_path("whisper_jfk"))), CHUNK):
            stuck.sendall(rawws.binary(chunk))
        viewer_events: list[dict[str, Any]] = []
        async with connect(f"{server.url}/v1/captions?channel=stuck-show") as viewer:
            speaker = asyncio.create_task(_speak(f"{server.url}/v1/stream?channel=stuck-show",
                                                 [], asyncio.Event()))
            async for message in viewer:
                viewer_events.append(json.loads(message))
                if any(e["type"] == "final" for e in viewer_events):
                    break
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(ConnectionClosed):
                async for message in viewer:
                    viewer_events.append(json.loads(message))
        exit_code = await asyncio.to_thread(server.process.wait, 30)
        exited_after = time.monotonic() - signalled
        assert await asyncio.wait_for(speaker, 10) == 1001
        stuck.close()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    assert exit_code == 0
    assert exited_after <= timeout_s + 2, exited_after
    assert viewer.close_code == 1001
    assert viewer_events[-1]["type"] == "end", viewer_events[-2:]
    # The stuck client held the drain until its closing handshake timed out (3 s) or the
    # drain's own time ran out, whichever came first; then the process went on and exited.
    drained = re.search(r"event=drained sessions=2 unfinished=\d seconds=([\d.]+)",
                        server.log.read_text())
    assert drained is not None and float(drained.group(1)) >= 2.5


async def test_sigterm_with_mqtt_publishes_the_last_final_and_ended_then_disconnects(
        tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    server = start_server("--mqtt", broker.url, name="shutdown-mqtt")
    subscriber = Subscriber(broker, "captions/drained/#")
    try:
        await asyncio.wait_for(subscriber.connected.wait(), 10)
        events: list[dict[str, Any]] = []
        interrupted = asyncio.Event()
        speaker = asyncio.create_task(
            _speak(f"{server.url}/v1/stream?channel=drained", events, interrupted))
        await asyncio.wait_for(interrupted.wait(), 60)
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(speaker, 30) == 1001
        assert await asyncio.to_thread(server.process.wait, 30) == 0
        await asyncio.sleep(1.0)  # the subscriber's own round trip
    finally:
        await subscriber.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        broker.stop()
    sent = [e for e in events if e["type"] == "final"]
    published = subscriber.finals()
    assert [f["text"] for f in published] == [f["text"] for f in sent]
    assert subscriber.of("/status")[-1] == "ended"
    # Clean MQTT disconnects, not the last will of a connection that broke.
    ours = [line for line in broker.log.read_text().splitlines() if "captioncast-" in line]
    assert any(line.endswith("-drained disconnected.") for line in ours), ours
    assert not any("closed its connection" in line for line in ours), ours
