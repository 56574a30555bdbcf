"""Who said it (PROTOCOL.md "Speakers"): the real server, the real model and speaker
encoder, real recordings of different people joined into one conversation."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.conftest import read_wav
from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.model

CHUNK = 3200  # 0.1 s of 16 kHz s16le
SPEED = 2.0  # the voices do not depend on the pace; the test's length does


def conversation(parts: list[tuple[str, str, float]]) -> tuple[bytes, list[tuple[str, float,
                                                                                float]]]:
    """(speaker, recording, gap after it) joined end to end; the reference turns."""
    audio: list[np.ndarray] = []
    turns: list[tuple[str, float, float]] = []
    at = 0.0
    for speaker, name, gap in parts:
        clip = read_wav(name)
        turns.append((speaker, at, at + len(clip) / 16000))
        audio += [clip, np.zeros(int(gap * 16000), np.float32)]
        at += len(clip) / 16000 + gap
    audio.append(np.zeros(16000, np.float32))
    pcm = (np.clip(np.concatenate(audio), -1, 1) * 32767).astype("<i2").tobytes()
    return pcm, turns


async def run_stream(url: str, pcm: bytes,
                     on_event: Any = None) -> list[dict[str, Any]]:
    """Stream `pcm` at SPEED, then eos; every event up to `end`."""
    events: list[dict[str, Any]] = []
    async with connect(url) as ws:
        async def send() -> None:
            for i in range(0, len(pcm), CHUNK):
                await ws.send(pcm[i:i + CHUNK])
                await asyncio.sleep(CHUNK / 32000 / SPEED)
            await ws.send(json.dumps({"type": "eos"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            event = json.loads(message)
            events.append(event)
            if on_event is not None:
                await on_event(ws, event)
        await sender
    return events


def turn_of(turns: list[tuple[str, float, float]], start: float, end: float) -> str | None:
    """The reference speaker a word's middle falls in, if clearly inside one turn."""
    middle = (start + end) / 2
    for speaker, lo, hi in turns:
        if lo + 0.2 <= middle <= hi - 0.1:
            return speaker
    return None


async def test_two_voices_get_two_labels_and_a_change_of_voice_ends_the_final(
        server: RunningServer) -> None:
    # B answers A after 0.2 s, under the VAD's 0.5 s hangover: one utterance to the VAD.
    pcm, turns = conversation([
        ("A", "arctic_aew_a0001", 0.6), ("B", "arctic_axb_a0004", 0.2),
        ("A", "arctic_aew_a0002", 0.7), ("B", "arctic_axb_a0006", 0.5),
    ])
    events = await run_stream(f"{server.url}/v1/stream?diarize=true", pcm)
    finals = [e for e in events if e["type"] == "final" and e["text"].strip()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "end"
    label_of: dict[str, set[str]] = {"A": set(), "B": set()}
    for final in finals:
        assert final["speaker"].startswith("S"), final
        assert all(w["speaker"] == final["speaker"] for w in final["words"]), final
        voices = {turn_of(turns, w["start"], w["end"]) for w in final["words"]} - {None}
        assert len(voices) <= 1, f"a final holds two speakers' words: {final}"
        for voice in voices:
            label_of[voice].add(final["speaker"])
    assert len(label_of["A"]) == 1 and len(label_of["B"]) == 1, label_of
    assert label_of["A"] != label_of["B"]
    tables = [e for e in events if e["type"] == "speakers"]
    assert tables and {s["id"] for s in tables[-1]["speakers"]} >= label_of["A"] | label_of["B"]
    first_final = next(e["seq"] for e in events if e["type"] == "final")
    assert tables[0]["seq"] < first_final  # a label is in the table before a final uses it


async def test_a_name_reaches_the_next_finals_a_late_viewer_and_the_caption_file(
        server: RunningServer) -> None:
    pcm, _ = conversation([("A", "arctic_aew_a0001", 1.0), ("A", "arctic_aew_a0002", 1.0),
                           ("A", "arctic_aew_a0003", 0.5)])
    named = False

    async def name_first_voice(ws: Any, event: dict[str, Any]) -> None:
        nonlocal named
        if event["type"] == "final" and event.get("speaker") and not named:
            named = True
            await ws.send(json.dumps({"type": "speaker", "id": event["speaker"],
                                      "name": "Alice"}))

    url = f"{server.url}/v1/stream?diarize=true&channel=speakers-naming"
    events = await run_stream(url, pcm, name_first_voice)
    finals = [e for e in events if e["type"] == "final" and e["text"].strip()]
    assert len(finals) >= 2 and len({f["speaker"] for f in finals}) == 1
    named_at = next(e["seq"] for e in events if e["type"] == "speakers"
                    and any(s.get("name") == "Alice" for s in e["speakers"]))
    later = [f for f in finals if f["seq"] > named_at]
    assert later and all(f["speaker_name"] == "Alice" for f in later)
    assert "speaker_name" not in finals[0]  # a final never changes: its name came later

    # A viewer that joins afterwards gets the table first, then the finals.
    async with connect(f"{server.url}/v1/captions?channel=speakers-naming&since=0") as ws:
        replay = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
    assert replay[0]["type"] == "speakers"
    assert replay[0]["speakers"][0]["name"] == "Alice"
    assert replay[1]["type"] == "final"

    base = server.url.replace("ws://", "http://")
    with urllib.request.urlopen(f"{base}/v1/channels/speakers-naming/captions.vtt") as reply:
        vtt = reply.read().decode()
    assert "<v Alice>" in vtt


async def test_bad_speaker_input_gets_a_clear_error_and_the_stream_goes_on(
        server: RunningServer) -> None:
    pcm, _ = conversation([("A", "arctic_aew_a0001", 0.5)])
    sent: list[str] = []

    async def misbehave(ws: Any, event: dict[str, Any]) -> None:
        if event["type"] == "ready":
            for message in ({"type": "speaker", "id": "S9", "name": "Bob"},
                            {"type": "speaker", "id": "S1", "name": ""},
                            {"type": "speaker", "id": "S1", "name": "x" * 500},
                            {"type": "speaker", "id": "Alice", "name": "Bob"}):
                sent.append(json.dumps(message))
                await ws.send(sent[-1])

    events = await run_stream(f"{server.url}/v1/stream?diarize=true", pcm, misbehave)
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 4 and all(e["code"] == "bad_request" for e in errors), errors
    assert any("S9" in e["message"] for e in errors)
    finals = [e for e in events if e["type"] == "final" and e["text"].strip()]
    assert finals and events[-1]["type"] == "end"

    for query, expected in (("diarize=maybe", "diarize must be true or false"),
                            ("multichannel=true", "multichannel=true needs channels=2")):
        async with connect(f"{server.url}/v1/stream?{query}") as ws:
            error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and expected in error["message"], error


async def test_multichannel_labels_each_channel_in_time_order(server: RunningServer) -> None:
    """A two-mic interview: each channel transcribed apart, its label the channel's."""
    a1, a2 = read_wav("arctic_aew_a0001"), read_wav("arctic_aew_a0002")
    b1, b2 = read_wav("arctic_axb_a0004"), read_wav("arctic_axb_a0006")

    def gap(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * 16000), np.float32)

    left = np.concatenate([a1, gap(0.5 + len(b1) / 16000), a2, gap(len(b2) / 16000 + 1.5)])
    right = np.concatenate([gap(len(a1) / 16000 + 0.3), b1, gap(0.2 + len(a2) / 16000), b2])
    size = max(len(left), len(right))
    stereo = np.stack([np.pad(left, (0, size - len(left))),
                       np.pad(right, (0, size - len(right)))], axis=1)
    pcm = (stereo * 32767).astype("<i2").tobytes()

    async def name_second(ws: Any, event: dict[str, Any]) -> None:
        if event["type"] == "final" and event.get("source_channel") == 1 \
                and "speaker_name" not in event:
            await ws.send(json.dumps({"type": "speaker", "id": "S2", "name": "Bob"}))

    events = await run_stream(f"{server.url}/v1/stream?channels=2&multichannel=true", pcm,
                              name_second)
    finals = [e for e in events if e["type"] == "final" and e["text"].strip()]
    assert [f["source_channel"] for f in finals] == [0, 1, 0, 1], finals
    assert [f["speaker"] for f in finals] == ["S1", "S2", "S1", "S2"]
    assert [f["utterance"] for f in events if f["type"] == "final"] == \
        list(range(events[-1]["utterances"]))
    starts = [f["start"] for f in finals]
    assert starts == sorted(starts)
    assert "glad to see you" in finals[1]["text"].lower()
    assert any(e["type"] == "speakers" and {"id": "S2", "name": "Bob"} in e["speakers"]
               for e in events)
