"""Several live streams on one server: all keep their finals; past capacity, a clean refusal."""

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
    # A capacity of about two streams: the refusal point comes from measured decode cost.
    running = start_server("--max-load", "0.2", "--decode-workers", "2", name="tight")
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


async def test_past_capacity_a_new_stream_is_refused_and_the_others_keep_their_finals(
        tight_server: RunningServer) -> None:
    url = stream_url(tight_server.url)
    running: list[asyncio.Task[StreamResult]] = []
    refused: list[dict[str, object]] = []
    names = iter(CLIPS * 2)
    # The admitted streams say nothing until the refusal is in: no final is decoded, so
    # the capacity is the server's starting estimate whatever this machine's speed (a
    # measured decode cost would set it: on a fast machine past the 8 streams tried here).
    go = asyncio.Event()
    while not refused and len(running) < 8:
        _, health = tight_server.health()
        capacity, sessions = health["capacity"], health["connected_sessions"]
        assert isinstance(capacity, int) and isinstance(sessions, int)
        name = next(names)
        if sessions < capacity:
            running.append(asyncio.create_task(stream(url, _held(go, _audio(name)),
                                                      realtime=True)))
            while tight_server.health()[1]["connected_sessions"] < len(running):  # admitted
                await asyncio.sleep(0.05)
            continue
        async with connect(url) as ws:
            event = json.loads(await asyncio.wait_for(ws.recv(), 30))
            await asyncio.wait_for(ws.wait_closed(), 30)
            refused.append({"event": event, "code": ws.close_code})
    go.set()
    assert refused, "never reached capacity"
    assert refused[0]["event"]["type"] == "error"  # type: ignore[index]
    assert refused[0]["event"]["code"] == "overloaded"  # type: ignore[index]
    assert refused[0]["code"] == 1013
    # refused at once for what the streams would cost, not once everybody was late: no
    # `ready` first, and the reason is capacity, not a backlog
    assert "at capacity" in refused[0]["event"]["message"], refused  # type: ignore[index]
    assert len(running) == capacity, (len(running), capacity)
    for result in await asyncio.gather(*running):
        check_protocol(result)
        assert not result.errors
        assert result.text
    metrics = _metrics(tight_server)
    assert metrics["captioncast_sessions_refused_total{code=overloaded}"] >= 1
    # the capacity gauge is the estimate /healthz gives (from the decode cost now measured)
    assert metrics["captioncast_capacity_streams"] == tight_server.health()[1]["capacity"]


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
