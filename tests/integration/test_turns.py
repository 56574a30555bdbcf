"""Turn-taking on /v1/stream (`turns=true`) and settings changed mid-stream (`configure`):
the real server, the real model and turn model, real recordings."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.conftest import read_wav, reference, wer
from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.model

CHUNK = 3200  # 0.1 s of 16 kHz s16le, sent in real time: a turn's timing is what is tested


def _pcm(*parts: np.ndarray) -> bytes:
    audio = np.concatenate(parts)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def _gap(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


async def _stream(url: str, pcm: bytes, on_event: Any = None) -> list[dict[str, Any]]:
    """Every event up to `end`, each with `received`: seconds since the first audio sent."""
    events: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    async with connect(url) as ws:
        began = loop.time()
        async def send() -> None:
            for i in range(0, len(pcm), CHUNK):
                await ws.send(pcm[i:i + CHUNK])
                await asyncio.sleep(CHUNK / 32000)
            await ws.send(json.dumps({"type": "eos"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            event = json.loads(message)
            events.append(event)
            event["received"] = loop.time() - began
            if on_event is not None:
                await on_event(ws, event)
        await sender
    return events


def _onset(clip: np.ndarray) -> float:
    """Where the recording's voice begins: the first 20 ms frame above -40 dBFS."""
    frames = clip[: len(clip) // 320 * 320].reshape(-1, 320)
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > 0.01)
    return float(loud[0]) * 0.02 if len(loud) else 0.0


async def test_each_sentence_is_a_turn_that_starts_at_its_voice(server: RunningServer) -> None:
    first, second = read_wav("arctic_aew_a0001"), read_wav("arctic_axb_a0004")
    pcm = _pcm(_gap(0.5), first, _gap(1.5), second, _gap(2.0))
    events = await _stream(f"{server.url}/v1/stream?turns=true", pcm)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    started = [e for e in events if e["type"] == "speech_started"]
    assert len(started) == 2
    onset = 0.5 + _onset(first)
    # From the VAD, not from a decode: where the recording's sound begins, and said while
    # its first syllable is still being sent (real time, 0.1 s chunks).
    assert 0.45 <= started[0]["at"] <= onset + 0.1, (started[0], onset)
    assert started[0]["received"] <= onset + 0.8, (started[0], onset)
    turns = [e for e in events if e["type"] == "turn"]
    assert [t["event"] for t in turns if t["event"] != "update"] == \
        ["start", "end", "start", "end"]
    ends = [t for t in turns if t["event"] == "end"]
    assert wer(reference("arctic_aew_a0001"), ends[0]["transcript"]) <= 0.2
    assert wer(reference("arctic_axb_a0004"), ends[1]["transcript"]) <= 0.2
    assert ends[0]["words"] and 0 < ends[0]["confidence"] <= 1
    # A turn's end follows the finals of its words, and comes before the next turn's start.
    order = [(e["type"], e.get("event")) for e in events if e["type"] in ("final", "turn")
             and e.get("event") != "update"]
    assert order.index(("turn", "end")) > order.index(("final", None))
    assert events[-1]["type"] == "end"


async def test_configure_changes_settings_mid_stream_and_bad_ones_are_refused(
        server: RunningServer) -> None:
    clip = read_wav("arctic_aew_a0001")
    pcm = _pcm(_gap(0.3), clip, _gap(1.0), clip, _gap(1.0))

    async def configure(ws: Any, event: dict[str, Any]) -> None:
        if event["type"] == "ready":
            for message in (
                {"type": "configure", "eot_threshold": 0.9, "eot_timeout_ms": 800,
                 "keyterms": ["Philip Steele"], "interim": False},
                {"type": "configure", "eot_threshold": 2},
                {"type": "configure", "model": "large"},
                {"type": "configure", "eager_eot_threshold": 0.95},
            ):
                await ws.send(json.dumps(message))

    events = await _stream(f"{server.url}/v1/stream?turns=true", pcm, configure)
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 3 and all(e["code"] == "bad_request" for e in errors), errors
    assert "eot_threshold must be between" in errors[0]["message"]
    assert "cannot change model" in errors[1]["message"]
    assert not [e for e in events if e["type"] == "partial"]  # interim off from the start
    ends = [e for e in events if e["type"] == "turn" and e["event"] == "end"]
    assert len(ends) == 2 and events[-1]["type"] == "end"

    async with connect(f"{server.url}/v1/stream") as ws:  # turn settings need turns
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send(json.dumps({"type": "configure", "eot_threshold": 0.5}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and "turns=true" in error["message"]
        await ws.send(json.dumps({"type": "eos"}))
