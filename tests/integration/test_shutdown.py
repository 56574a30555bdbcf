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

from captioncast.transport.shutdown import ShutdownOptions
from captioncast_client.audio_files import decode_pcm, rechunk
from tests.conftest import speech_path
from tests.integration import rawws
from tests.integration.broker import Mosquitto
from tests.integration.conftest import RunningServer, start_server
from tests.integration.test_mqtt import Subscriber

pytestmark = pytest.mark.model

# Long enough to decode the sentence in progress on a slow or busy machine: the drain ends
# when the stream is closed, so a long timeout costs nothing where decoding is fast.
SHUTDOWN_TIMEOUT_S = 30.0
# What the process may take past its drain to exit: the interpreter tearing down, and
# a decode still running in a worker thread (joined at exit) when the drain was cut.
EXIT_SLACK_S = 5.0
CHUNK = 3200  # 100 ms


def _drained(log: str) -> tuple[int, int, float]:
    """The server's account of its drain: sessions, unfinished ones, seconds."""
    found = re.search(r"event=drained sessions=(\d+) unfinished=(\d+) seconds=([\d.]+)", log)
    assert found is not None, log[-2000:]
    return int(found.group(1)), int(found.group(2)), float(found.group(3))


# Where to interrupt when no partial says a sentence is under way (on a machine so busy
# that partials, which wait behind finals, come late or not at all): audio time, inside a
# sentence of the monologue (46.6 to 51.8 s).
INTERRUPT_ANYWAY_S = 50.0


async def _speak(url: str, events: list[dict[str, Any]], interrupted: asyncio.Event) -> int | None:
    """Stream the long monologue in real time until the server closes; return its close code.

    `interrupted` is set once a partial shows a sentence well under way, or at
    INTERRUPT_ANYWAY_S of audio sent (then no event has `interrupt` set)."""
    chunks = list(rechunk(decode_pcm(str(speech_path("long_mfa_spontaneous_3"))), CHUNK))
    async with connect(url) as ws:
        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                event["at"] = time.monotonic()
                events.append(event)
                finals = {e["utterance"] for e in events if e["type"] == "final"}
                if (not interrupted.is_set() and event["type"] == "partial"
                        and event["utterance"] not in finals
                        and len(event["text"].split()) >= 3 and len(finals) >= 1):
                    event["interrupt"] = True
                    interrupted.set()  # well into the second sentence or later

        receiver = asyncio.create_task(receive())
        started = time.monotonic()
        try:
            for i, chunk in enumerate(chunks):
                await asyncio.sleep(max(0.0, started + i * 0.1 - time.monotonic()))
                await ws.send(chunk)
                if i * CHUNK / 32000 >= INTERRUPT_ANYWAY_S:
                    interrupted.set()
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
        await asyncio.wait_for(interrupted.wait(), 120)  # a deadline: it comes by 50 s
        # the sentence the partial showed under way; else (interrupted by audio time) the
        # one the server was in, which is the last to get a final
        partial = next((e for e in events if e.get("interrupt")), None)
        in_progress = partial["utterance"] if partial else None
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        # While it drains: /healthz says so, and a new stream is turned away.
        seen: list[tuple[int, str]] = []
        refused: dict[str, Any] | None = None
        refused_code: int | None = None
        while server.process.poll() is None and time.monotonic() - signalled < 60:
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
    if in_progress is None:
        in_progress = finals[-1]["utterance"]
    last_final = next(f for f in finals if f["utterance"] == in_progress)
    assert last_final["text"].strip(), last_final  # the interrupted sentence, decoded
    assert last_final in after
    assert events[-1]["type"] == "end" and events[-1]["utterances"] == len(finals)
    assert [f["utterance"] for f in finals] == list(range(len(finals)))
    assert close_code == 1001
    assert exit_code == 0
    assert seen and all(status == 503 and state == "draining" for status, state in seen), seen
    if refused is not None:
        assert refused["code"] == "overloaded" and refused_code == 1013
    log = server.log.read_text()
    assert "event=draining sessions=1" in log
    # the stream finished in the drain (nothing cut), within the timeout, and so did the
    # process, allowing for its exit
    sessions, unfinished, drain_s = _drained(log)
    assert (sessions, unfinished) == (1, 0) and drain_s <= SHUTDOWN_TIMEOUT_S, log[-2000:]
    assert exited_after <= SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S, exited_after
    print(f"exit {exited_after:.2f} s after SIGTERM; final of utterance {in_progress}: "
          f"{last_final['text']!r}; healthz during the drain: {seen[:3]}")


async def test_a_stuck_client_cannot_hold_the_shutdown_past_its_timeout() -> None:
    """A client that reads nothing cannot finish its close; the process still exits in time,
    and a viewer still gets the speaker's `end`."""
    # Room enough for the speaker's last finals on a slow machine: the stuck client is what
    # would use it all up, were its close not cut after close_timeout_s (3 s).
    timeout_s = SHUTDOWN_TIMEOUT_S
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
            async with asyncio.timeout(120):  # a deadline, should no final ever come
                async for message in viewer:
                    viewer_events.append(json.loads(message))
                    if any(e["type"] == "final" for e in viewer_events):
                        break
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(60):
                    async for message in viewer:
                        viewer_events.append(json.loads(message))
        exit_code = await asyncio.to_thread(server.process.wait, 60)
        exited_after = time.monotonic() - signalled
        assert await asyncio.wait_for(speaker, 30) == 1001
        stuck.close()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    assert exit_code == 0
    assert viewer.close_code == 1001
    assert viewer_events[-1]["type"] == "end", viewer_events[-2:]
    # The stuck client held the drain until its closing handshake timed out (3 s), not to
    # the end of the drain's time: both streams were closed well before that ran out (the
    # speaker's once its last finals and `end` were out). Then the process exited, within
    # its timeout and the time a process takes to exit.
    options = ShutdownOptions(timeout_s=timeout_s)
    sessions, unfinished, drain_s = _drained(server.log.read_text())
    assert (sessions, unfinished) == (2, 0), server.log.read_text()[-2000:]
    assert options.close_timeout_s - 0.5 <= drain_s < options.drain_s(), drain_s
    assert exited_after <= timeout_s + EXIT_SLACK_S, exited_after


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
        await asyncio.wait_for(interrupted.wait(), 120)  # a deadline: it comes by 50 s
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(speaker, 60) == 1001
        assert await asyncio.to_thread(server.process.wait, 60) == 0
        sent = [e for e in events if e["type"] == "final"]
        # what the server published before it exited reaches the subscriber in its own
        # round trip: wait for it (a deadline; the assertions below say what is missing)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while ([f["text"] for f in subscriber.finals()] != [f["text"] for f in sent]
                       or subscriber.of("/status")[-1:] != ["ended"]):
                    await asyncio.sleep(0.05)
    finally:
        await subscriber.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        broker.stop()
    published = subscriber.finals()
    assert [f["text"] for f in published] == [f["text"] for f in sent]
    assert subscriber.of("/status")[-1] == "ended"
    # Clean MQTT disconnects, not the last will of a connection that broke.
    ours = [line for line in broker.log.read_text().splitlines() if "captioncast-" in line]
    assert any(line.endswith("-drained disconnected.") for line in ours), ours
    assert not any("closed its connection" in line for line in ours), ours
