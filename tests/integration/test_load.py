"""Several live streams on one server: all keep their finals; idle sessions are admitted;
speakers past capacity are refused alone."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import StreamResult, stream, stream_url
from tests.conftest import reference, speech_path, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.integration.test_streaming import check_protocol

pytestmark = pytest.mark.model

# Four different speakers at once; offline tiny.en gets these nearly right.
CLIPS = ["whisper_jfk", "libri_dev_2412-153948-0000", "libri_dev_1272-128104-0000",
         "libri_test_61-70968-0000"]


def _audio(name: str) -> list[bytes]:
    return [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]


def _metrics(server: RunningServer) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


@pytest.fixture(scope="module")
def tight_server() -> Iterator[RunningServer]:
    # Speakers past about two lose their partials, past about four are refused (from the
    # prior estimate of decode cost; the measured one moves it once finals are decoded).
    running = start_server("--max-load", "0.2", "--set", "capacity.hard_load=0.3",
                           "--decode-workers", "2", name="tight")
    yield running
    stop_server(running)


async def test_four_concurrent_real_streams_all_get_every_final(server: RunningServer) -> None:
    results = await asyncio.gather(
        *(stream(stream_url(server.url), _audio(name), realtime=True) for name in CLIPS))
    for name, result in zip(CLIPS, results):
        check_protocol(result)  # utterances 0..n-1, each exactly one final, then `end`
        assert not result.errors, result.errors
        score = wer(reference(name), result.text)
        assert score <= 0.2, (name, score, result.text)


async def _held(go: asyncio.Event, chunks: list[bytes]) -> AsyncIterator[bytes]:
    """A live source that starts talking when told."""
    await go.wait()
    for chunk in chunks:
        yield chunk


async def _until_connected(server: RunningServer, sessions: int) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + 60
    while (health := server.health()[1])["connected_sessions"] != sessions:
        assert asyncio.get_running_loop().time() < deadline, health
        await asyncio.sleep(0.1)
    return health


async def test_idle_sessions_are_admitted_and_speakers_past_capacity_are_refused_alone(
        tight_server: RunningServer) -> None:
    url = stream_url(tight_server.url)
    # The sources say nothing until all are connected: connected sessions that do not
    # speak cost no decoding, so all of them are admitted whatever the capacity.
    go = asyncio.Event()
    running = [asyncio.create_task(stream(url, _held(go, _audio(name)), realtime=True,
                                          reconnect=False))
               for name in CLIPS * 2]
    health = await _until_connected(tight_server, len(running))
    hard = health["hard_capacity"]
    assert health["speaking_sessions"] == 0
    assert isinstance(hard, int) and hard < len(running), health
    go.set()
    outcomes = await asyncio.gather(*running, return_exceptions=True)

    def heard(outcome: StreamResult | BaseException) -> StreamResult | None:
        # A client whose stream the server closes with 1013 raises; it keeps what it got.
        return outcome if isinstance(outcome, StreamResult) else getattr(outcome, "result", None)

    def overloaded(outcome: StreamResult | BaseException) -> bool:
        result = heard(outcome)
        return result is not None and any(e["code"] == "overloaded" for e in result.errors)

    refused = [o for o in outcomes if overloaded(o)]
    kept = [o for o in outcomes if not overloaded(o)]
    assert refused, outcomes
    assert kept, outcomes
    for outcome in refused:  # an `overloaded` error, for that session only, with a retry
        result = heard(outcome)
        assert result is not None
        assert "retry after" in result.errors[0]["message"], result.errors
    for result in kept:  # the others keep every final
        assert isinstance(result, StreamResult), result
        check_protocol(result)
        assert not result.errors
        assert result.text
    metrics = _metrics(tight_server)
    assert metrics["captioncast_admission_total{decision=refuse}"] >= len(refused)
    assert metrics["captioncast_admission_total{decision=connect}"] >= len(running)
    # the capacity gauge is the estimate /healthz gives (from the decode cost now measured)
    assert metrics["captioncast_capacity_streams"] == tight_server.health()[1]["capacity"]


async def _silent(url: str, stop: asyncio.Event, errors: list[object]) -> None:
    """A muted microphone: digital silence at real time until told to stop."""
    async with connect(url) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ready["type"] != "ready":
            errors.append(ready)
            return
        while not stop.is_set():
            await ws.send(silence(0.1))
            await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "eos"}))
        async for message in ws:
            event = json.loads(message)
            if event["type"] in ("error", "final"):
                errors.append(event)


@pytest.fixture(scope="module")
def roomy_server() -> Iterator[RunningServer]:
    # Admission on (the default --max-load); one address may hold the 34 sessions.
    running = start_server("--max-load", "0.7", "--max-connections-per-ip", "64",
                           "--set", "security.max_idle_per_ip=64", name="roomy")
    yield running
    stop_server(running)


async def test_32_silent_sessions_leave_room_for_real_speakers(
        roomy_server: RunningServer) -> None:
    url = stream_url(roomy_server.url)
    stop, heard = asyncio.Event(), []
    silent = [asyncio.create_task(_silent(url, stop, heard)) for _ in range(32)]
    await _until_connected(roomy_server, 32)
    speakers = CLIPS[:2]
    results = await asyncio.gather(
        *(stream(url, _audio(name), realtime=True) for name in speakers))
    stop.set()
    await asyncio.gather(*silent)
    assert not heard, heard  # every silent session admitted, no final from silence
    for name, result in zip(speakers, results):
        check_protocol(result)
        assert not result.errors, result.errors
        score = wer(reference(name), result.text)
        assert score <= 0.2, (name, score, result.text)
    assert _metrics(roomy_server)["captioncast_admission_total{decision=speak}"] >= 2


async def test_metrics_serve_latency_and_decode_histograms(server: RunningServer) -> None:
    result = await stream(stream_url(server.url), _audio("whisper_jfk"), realtime=True)
    check_protocol(result)
    metrics = _metrics(server)
    assert metrics["captioncast_final_latency_seconds_count"] >= len(result.finals)
    # (partials: as many as came, which depends on how fast this machine decodes)
    partials = sum(e["type"] == "partial" for e in result.events)
    assert metrics["captioncast_partial_latency_seconds_count"] >= partials
    for kind, least in (("partial", min(partials, 1)), ("final", 1)):
        assert metrics[f"captioncast_decode_seconds_count{{kind={kind}}}"] >= least
        assert metrics[f"captioncast_decode_wait_seconds_count{{kind={kind}}}"] >= least
    assert metrics["captioncast_audio_seconds_total"] >= 11.0  # JFK is 11 s
    assert metrics["captioncast_finals_total"] >= len(result.finals)
    # decode seconds per audio second over the server's life: the same account as the
    # per-kind counters (what it is worth depends on the machine, not what it means)
    busy = sum(v for k, v in metrics.items()
               if k.startswith("captioncast_decode_busy_seconds_total"))
    decoded = sum(v for k, v in metrics.items()
                  if k.startswith("captioncast_decoded_audio_seconds_total"))
    assert decoded > 0 and metrics["captioncast_real_time_factor"] == pytest.approx(busy / decoded)
    # (its value, which the machine's speed sets, is checked against /healthz on the
    # server with admission on: test_past_capacity_...)
    assert "captioncast_capacity_streams" in metrics
    assert "captioncast_queue_depth" in metrics and "captioncast_lag_seconds" in metrics
    _, health = server.health()
    for key in ("capacity", "load", "lag_s", "decode_workers", "final_cost_per_audio_s"):
        assert key in health
