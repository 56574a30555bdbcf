"""Channels on the real server: many viewers, a slow one, replay, live caption files, watch."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
import srt
import webvtt
from websockets.asyncio.client import connect

from captioncast.protocol.captions import MAX_LINE_CHARS, MAX_LINES
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from captioncast_client.viewing import captions_url
from tests.conftest import speech_path
from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.model


def _audio(*names: str) -> list[bytes]:
    chunks: list[bytes] = []
    for name in names:
        chunks += [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]
    return chunks


async def _viewer(url: str, max_events: int = 10_000,
                  hold: asyncio.Event | None = None) -> list[dict[str, Any]]:
    """Collect a channel's events until `end`; a stalled viewer reads none of them until
    `hold` is set."""
    events: list[dict[str, Any]] = []
    async with connect(url, max_queue=None) as ws:
        if hold is not None:
            await hold.wait()
        async for message in ws:
            event = json.loads(message)
            events.append(event)
            if event["type"] == "end" or len(events) >= max_events:
                break
    return events


def _viewer_count(server: RunningServer) -> int:
    _, _, body = _http(f"http://127.0.0.1:{server.port}/healthz")
    return int(json.loads(body)["viewers"])


async def _until_viewers(server: RunningServer, count: int) -> None:
    """Until the server counts `count` viewers (/healthz: a channel nobody has spoken on is
    not listed in /v1/channels, whoever waits on it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (seen := await asyncio.to_thread(_viewer_count, server)) < count:
        assert loop.time() < deadline, seen
        await asyncio.sleep(0.05)


def _http(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def _texts(finals: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in finals if f["type"] == "final"]


async def test_many_viewers_a_slow_one_replay_and_caption_files(server: RunningServer) -> None:
    channel = f"talk-{secrets.token_hex(3)}"
    viewer_url = captions_url(server.url, channel)
    before = await asyncio.to_thread(_viewer_count, server)
    fast = asyncio.create_task(_viewer(viewer_url))
    # A viewer that reads nothing until the speaker and the fast viewer are done with the
    # whole talk: nobody can have waited for it.
    stalled = asyncio.Event()
    slow = asyncio.create_task(_viewer(viewer_url, hold=stalled))
    await _until_viewers(server, before + 2)  # both subscribed before the speaker starts
    speaker = await stream(stream_url(server.url, channel=channel),
                           _audio("whisper_jfk", "libri_dev_2412-153948-0000"))
    fast_events = await asyncio.wait_for(fast, 60)
    assert not slow.done()
    stalled.set()
    slow_events = await asyncio.wait_for(slow, 60)

    spoken = [f for f in speaker.finals if f["text"]]
    assert len(spoken) >= 2
    for events in (fast_events, slow_events):
        assert events[-1]["type"] == "end"
        assert _texts(events) == [f["text"] for f in speaker.finals]
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        utterances = [e["utterance"] for e in events if e["type"] == "final"]
        assert utterances == list(range(len(utterances)))
    # the fast viewer sees every event, with contiguous channel seq; it and the speaker got
    # the whole talk, `end` included, while the stalled viewer had read nothing: it held
    # nobody up, and it still gets every final once it reads
    assert [e["seq"] for e in fast_events] == list(range(1, len(fast_events) + 1))

    # a late viewer replays what it missed with since=
    replay = await _viewer(captions_url(server.url, channel, since=0), max_events=100)
    late_finals = [e for e in replay if e["type"] == "final"]
    assert _texts(late_finals) == _texts(fast_events)
    middle = late_finals[0]["seq"]
    again = await _viewer(captions_url(server.url, channel, since=middle), max_events=100)
    assert _texts(again) == _texts(fast_events)[1:]

    # the live caption files: valid, short lines, the finals' words in order
    base = f"http://127.0.0.1:{server.port}/v1/channels/{channel}/captions"
    status, kind, body = _http(base + ".vtt")
    assert status == 200 and kind.startswith("text/vtt")
    cues = webvtt.from_string(body).captions
    status, kind, body = _http(base + ".srt")
    assert status == 200
    subtitles = list(srt.parse(body))
    words = " ".join(_texts(fast_events)).split()
    for texts in ([c.text for c in cues], [s.content for s in subtitles]):
        assert " ".join(texts).split() == words
        for text in texts:
            lines = text.split("\n")
            assert len(lines) <= MAX_LINES and all(len(x) <= MAX_LINE_CHARS for x in lines)
    starts = [s.start.total_seconds() for s in subtitles]
    assert starts == sorted(starts)

    status, _, body = _http(f"http://127.0.0.1:{server.port}/v1/channels")
    listed = {c["channel"]: c for c in json.loads(body)["channels"]}
    assert listed[channel]["live"] is False and listed[channel]["utterances"] >= 2

    # `captioncast watch` replays the channel and stops at its end
    watched = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "watch", channel, "--server", server.url,
         "--since", "0"], capture_output=True, text=True, timeout=60,
    )
    assert watched.returncode == 0, watched.stderr
    shown = watched.stdout.lower()
    assert "fellow americans" in shown and "tedious to him" in shown
    assert shown.count("\n") == len([t for t in _texts(fast_events) if t])


async def test_one_speaker_per_channel_and_bad_viewer_requests(server: RunningServer) -> None:
    channel = f"solo-{secrets.token_hex(3)}"
    async with connect(stream_url(server.url, channel=channel)) as first:
        assert json.loads(await first.recv())["type"] == "ready"
        async with connect(stream_url(server.url, channel=channel)) as second:
            event = json.loads(await second.recv())
            assert event["type"] == "error" and event["code"] == "bad_request"
            assert "already has a speaker" in event["message"]
            await second.wait_closed()
            assert second.close_code == 1008
        await first.send(json.dumps({"type": "eos"}))
    for query in ("", "?channel=bad/name", "?channel=a&since=-1", "?channel=a&volume=3"):
        async with connect(f"{server.url}/v1/captions{query}") as viewer:
            event = json.loads(await viewer.recv())
            assert event["type"] == "error" and event["code"] == "bad_request", query
    status, _, body = _http(f"http://127.0.0.1:{server.port}/v1/channels/nobody/captions.vtt")
    assert status == 404 and "nobody" in body
    status, _, _ = _http(f"http://127.0.0.1:{server.port}/overlay?channel=x&colour=red")
    assert status == 400
