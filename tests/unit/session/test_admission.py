"""Admission that follows speech (issue 19): idle sessions are nearly free, speakers are not.

The meter, the grace and the registry's counts run on a controllable clock; the server
runs in this process with the scripted decoder (one word per 0.4 s, no model).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from captioncast.core.decoding import DecodeRequest, DecodeResult
from captioncast.core.options import SessionConfig
from captioncast.core.params import StreamParams
from captioncast.core.policy import CaptionSession
from captioncast.engine.capacity import CapacityMeter, CapacityOptions, SpeechGrace
from captioncast.engine.scheduler import DecodeScheduler
from captioncast.errors import Overloaded
from captioncast.options import ServerOptions, ShutdownOptions
from captioncast.protocol.events import Final
from captioncast.session.live_session import LiveSession
from captioncast.session.registry import SessionRegistry
from captioncast.transport.security import SecurityOptions, TooManyConnections, http_refusal
from captioncast.transport.server import run_server
from captioncast.transport.server_context import ServerContext
from tests.conftest import read_wav
from tests.support.fake_decoder import Driver, ScriptedDecoder

DEADLINE_S = 60.0
CHUNK_S = 0.1
SPEECH = "libri_test_61-70968-0000"  # 4.9 s, two sentences
LONG_SPEECH = "libri_dev_2412-153948-0000"  # 11.7 s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pcm(name: str, gap_s: float = 1.0) -> bytes:
    audio = np.concatenate([read_wav(name), np.zeros(int(gap_s * 16000), np.float32)])
    return (audio * 32767).astype("<i2").tobytes()


# -- the meter, the grace, the registry ---------------------------------------------------


def test_the_grace_keeps_a_pause_speaking_and_says_when_speech_starts_from_idle() -> None:
    clock = Clock()
    grace = SpeechGrace(5.0, clock)
    assert not grace.recent() and not grace.update(False)
    assert grace.update(True)  # idle -> speaking: admission is asked
    clock.now += 1.0
    assert not grace.update(True)  # still speaking
    clock.now += 4.0
    assert grace.recent() and not grace.update(False)  # a pause between sentences
    assert not grace.update(True)  # ...keeps its place
    clock.now += 5.1
    assert not grace.recent()
    assert grace.update(True)  # after the grace: asked again


def test_the_soft_and_hard_capacity_follow_the_measured_final_cost() -> None:
    meter = CapacityMeter(2, CapacityOptions(max_load=0.5, hard_load=0.9), clock=Clock())
    meter.record("final", audio_s=4.0, decode_s=0.4)  # 0.1 s per audio second
    assert (meter.capacity(), meter.hard_capacity()) == (10, 18)
    report = meter.report(lag_s=0.0)
    assert (report.capacity, report.hard_capacity) == (10, 18)
    # a hard load under the soft one never refuses speakers that would only be shed
    assert CapacityMeter(1, CapacityOptions(max_load=0.5, hard_load=0.1)).hard_capacity() == 3
    assert meter.retry_after(lag_s=0.0) == 10 and meter.retry_after(lag_s=12.2) == 13


def test_http_refusals_of_an_overloaded_server_say_when_to_retry() -> None:
    meter = CapacityMeter(1, CapacityOptions(retry_after_s=7.0))
    assert http_refusal(meter.refusal(3, lag_s=0.0)) == (503, [("Retry-After", "7")])
    assert http_refusal(TooManyConnections("idle", retry_after_s=9)) == (
        429, [("Retry-After", "9")])
    assert http_refusal(Overloaded("no figure")) is None  # the plain 503


@dataclass
class Session:
    session_id: str
    speaking: bool = False
    streams: int = 1
    address: str | None = "10.0.0.1"
    token_key: str | None = None
    connected: bool = True
    awaiting_resume: bool = False
    detached_at: float = 0.0
    closed: list[str] = field(default_factory=list)

    def expire_now(self) -> None:
        self.closed.append("expired")

    def go_away(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def test_the_registry_counts_speakers_and_idle_sessions_per_address_and_token() -> None:
    registry = SessionRegistry(64)
    registry.register(Session("a", speaking=True))
    registry.register(Session("b"))
    registry.register(Session("c", address="10.0.0.2", token_key="t1"))
    registry.register(Session("d", token_key="t1"))
    registry.register(Session("e", connected=False, awaiting_resume=True))  # not idle: gone
    assert registry.speaking == 1 and registry.connected == 4
    assert registry.idle_from("10.0.0.1") == 2 and registry.idle_from("10.0.0.2") == 1
    assert registry.idle_with("t1") == 2 and registry.idle_with("t2") == 0


async def test_a_live_session_speaks_while_it_has_speech_and_for_the_grace_after() -> None:
    clock = Clock()
    ctx = ServerContext(ServerOptions(capacity=CapacityOptions(speech_grace_s=5.0)), clock)
    decoder = ScriptedDecoder()
    async with DecodeScheduler(decoder) as scheduler:
        ctx.attach(decoder, scheduler)
        live = LiveSession("s", StreamParams(), ctx, address="10.0.0.9")
        live.open()
        assert not live.speaking and ctx.sessions.idle_from("10.0.0.9") == 0  # no link yet
        pcm = _pcm(SPEECH)
        for i in range(0, len(pcm), 3200):
            live.audio(pcm[i:i + 3200])
            await asyncio.sleep(0)
        deadline = time.monotonic() + DEADLINE_S
        while live.core.speaking:  # the last final decodes
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert live.speaking and ctx.sessions.speaking == 1  # within the grace
        assert ctx.health()["speaking_sessions"] == 1
        clock.now += 5.1
        assert not live.speaking and ctx.sessions.speaking == 0
        live.finalize()


def test_shed_partials_stops_asking_partials_and_the_finals_go_on() -> None:
    session = CaptionSession(SessionConfig(session_id="s", model="scripted", language="en"))
    driver = Driver(session, ScriptedDecoder(), delay_chunks=3)
    audio = read_wav(SPEECH)
    driver.feed(audio[:16000])
    assert session.speaking
    driver.handle(session.shed_partials())
    asked = len(driver.decoder.requests)
    driver.feed(audio[16000:])
    driver.finish()
    later = driver.decoder.requests[asked:]
    assert later and all(r.kind == "final" for r in later)
    assert any(isinstance(e, Final) and e.text for e in driver.events)
    assert not session.speaking


# -- the server in this process -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(decoder: ScriptedDecoder, **options: object) -> AsyncIterator[str]:
    port = _free_port()
    server_options = ServerOptions(port=port, shutdown=ShutdownOptions(timeout_s=3.0),
                                   **options)  # type: ignore[arg-type]
    started, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_server(server_options, decoder, started=started, stop=stop))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    try:
        yield f"ws://127.0.0.1:{port}/v1/stream"
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


@dataclass
class Heard:
    events: list[dict[str, object]] = field(default_factory=list)
    close_code: int | None = None
    eos_at: float = 0.0
    final_at: list[float] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.events if e["type"] == kind]


async def _read(ws: ClientConnection, heard: Heard) -> None:
    with contextlib.suppress(Exception):
        async for message in ws:
            event = json.loads(message)
            heard.events.append(event)
            if event["type"] == "final":
                heard.final_at.append(time.monotonic())
    heard.close_code = ws.close_code


async def _speak(url: str, pcm: bytes, speed: float = 2.0) -> Heard:
    """Send `pcm` at `speed` times real time, then eos; everything heard until the close."""
    heard = Heard()
    async with connect(url) as ws:
        reader = asyncio.create_task(_read(ws, heard))
        step = int(CHUNK_S * 32000)
        with contextlib.suppress(Exception):
            for i in range(0, len(pcm), step):
                if reader.done():
                    break  # refused: closed by the server
                await ws.send(pcm[i:i + step])
                await asyncio.sleep(CHUNK_S / speed)
            heard.eos_at = time.monotonic()
            await ws.send(json.dumps({"type": "eos"}))
        await asyncio.wait_for(reader, DEADLINE_S)
    return heard


async def _idle(url: str, silent: bool, stop: asyncio.Event, heard: Heard) -> None:
    """A muted microphone (digital silence) or a source that only keeps the session open."""
    async with connect(url) as ws:
        reader = asyncio.create_task(_read(ws, heard))
        while not stop.is_set() and not reader.done():
            if silent:
                await ws.send(bytes(int(CHUNK_S * 32000)))
            else:
                await ws.send(json.dumps({"type": "keepalive"}))
            await asyncio.sleep(CHUNK_S if silent else 0.5)
        await ws.close()
        await asyncio.wait_for(reader, DEADLINE_S)


async def _health(url: str) -> dict[str, object]:
    import urllib.request

    target = url.replace("ws://", "http://").replace("/v1/stream", "/healthz")

    def get() -> dict[str, object]:
        with urllib.request.urlopen(target, timeout=10) as response:
            body: dict[str, object] = json.loads(response.read())
            return body

    return await asyncio.to_thread(get)


async def _admissions(url: str) -> dict[str, float]:
    """captioncast_admission_total by decision."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    target = url.replace("ws://", "http://").replace("/v1/stream", "/metrics")

    def get() -> str:
        with urllib.request.urlopen(target, timeout=10) as response:
            return str(response.read().decode())

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(get)):
        for sample in family.samples:
            if sample.name == "captioncast_admission_total":
                found[sample.labels["decision"]] = sample.value
    return found


async def test_32_idle_sessions_do_not_lock_out_a_speaker() -> None:
    # The old admission (connected sessions x cost) took 9 of these on a fresh server.
    options = {"capacity": CapacityOptions(max_load=0.7),
               "security": SecurityOptions(max_connections_per_ip=64, max_idle_per_ip=40)}
    async with serving(ScriptedDecoder(), **options) as url:
        stop = asyncio.Event()
        idle = [Heard() for _ in range(32)]
        tasks = [asyncio.create_task(_idle(url, n % 2 == 0, stop, heard))
                 for n, heard in enumerate(idle)]
        deadline = time.monotonic() + DEADLINE_S
        while (await _health(url))["connected_sessions"] != 32:
            assert time.monotonic() < deadline and not any(t.done() for t in tasks)
            await asyncio.sleep(0.1)
        health = await _health(url)
        assert health["speaking_sessions"] == 0
        speaker = await asyncio.wait_for(_speak(url, _pcm(SPEECH)), DEADLINE_S)
        assert not speaker.of("error"), speaker.events
        assert speaker.of("final") and speaker.of("end") and speaker.close_code == 1000
        stop.set()
        await asyncio.gather(*tasks)
        for heard in idle:
            assert not heard.of("error") and not heard.of("final")


async def test_idle_sessions_past_the_per_address_limit_are_refused_with_a_retry() -> None:
    options = {"security": SecurityOptions(max_idle_per_ip=2)}
    async with serving(ScriptedDecoder(), **options) as url:
        stop = asyncio.Event()
        held = [Heard(), Heard()]
        tasks = [asyncio.create_task(_idle(url, False, stop, h)) for h in held]
        while (await _health(url))["connected_sessions"] != 2:
            await asyncio.sleep(0.05)
        refused = Heard()
        async with connect(url) as ws:
            await _read(ws, refused)
        assert refused.close_code == 1013
        error = refused.of("error")[0]
        assert error["code"] == "overloaded"
        assert "max_idle_per_ip" in str(error["message"])
        assert "retry after 10 s" in str(error["message"])
        stop.set()
        await asyncio.gather(*tasks)


class CostlyDecoder(ScriptedDecoder):
    """The scripted decoder at a fixed cost: finals take COST s per second of audio."""

    COST = 0.15  # the meter's prior, so capacity is the same before and after measuring

    def decode(self, request: DecodeRequest) -> DecodeResult:
        time.sleep(request.duration * (self.COST if request.kind == "final" else 0.02))
        return super().decode(request)


async def test_speakers_past_capacity_are_shed_then_refused_before_finals_get_late() -> None:
    # One worker at 0.15 s per audio second: soft capacity 1 speaker, hard capacity 2.
    capacity = CapacityOptions(max_load=0.2, hard_load=0.4, speech_grace_s=5.0)
    async with serving(CostlyDecoder(), capacity=capacity) as url:
        first = asyncio.create_task(_speak(url, _pcm(LONG_SPEECH)))
        await asyncio.sleep(1.0)
        second = asyncio.create_task(_speak(url, _pcm(SPEECH)))
        await asyncio.sleep(1.0)
        late = [asyncio.create_task(_speak(url, _pcm(SPEECH))) for _ in range(2)]
        admitted, shed, *refused = await asyncio.wait_for(
            asyncio.gather(first, second, *late), DEADLINE_S)
        health = await _health(url)
        metrics = await _admissions(url)
    assert health["capacity"] == 1 and health["hard_capacity"] == 2
    for heard in (admitted, shed):
        assert not heard.of("error"), heard.events
        assert heard.of("final") and heard.of("end") and heard.close_code == 1000
        # no final got late: the last one within max_lag_s of eos
        waited = heard.final_at[-1] - heard.eos_at
        assert waited < capacity.max_lag_s, waited
    assert admitted.of("partial")
    assert not shed.of("partial"), "the second speaker's partials were shed"
    for heard in refused:
        assert heard.close_code == 1013, heard.events
        errors = heard.of("error")
        assert errors and errors[0]["code"] == "overloaded"
        assert "retry after" in str(errors[0]["message"])
        assert heard.of("end")  # what it said was finalized before the close
    assert metrics["speak"] >= 1 and metrics["shed"] == 1 and metrics["refuse"] == 2


async def test_the_client_library_reports_a_refusal_past_capacity_and_keeps_its_finals() -> None:
    # A refused speaker must not resume into the same refusal: the library raises, with
    # what was captioned before it, and says when to retry.
    from captioncast_client.errors import ServerRefused
    from captioncast_client.streaming import stream

    capacity = CapacityOptions(max_load=0.2, hard_load=0.4, speech_grace_s=5.0)
    async with serving(CostlyDecoder(), capacity=capacity) as url:
        first = asyncio.create_task(_speak(url, _pcm(LONG_SPEECH)))
        await asyncio.sleep(1.0)
        second = asyncio.create_task(_speak(url, _pcm(SPEECH)))
        await asyncio.sleep(1.0)
        pcm = _pcm(SPEECH)
        chunks = [pcm[i:i + 3200] for i in range(0, len(pcm), 3200)]
        with pytest.raises(ServerRefused, match=r"overloaded.*retry after") as refused:
            await asyncio.wait_for(stream(url, chunks, speed=2.0), DEADLINE_S)
        await asyncio.wait_for(asyncio.gather(first, second), DEADLINE_S)
    result = refused.value.result
    assert result is not None and result.resumes == []  # no attempt to resume it
    kinds = [e["type"] for e in result.events]
    assert "error" in kinds and kinds[-1] == "end"
