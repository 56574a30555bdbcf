"""What the `captioncast` command and the server say to a person, against a real server.

The cases that need no server are in tests/unit/test_cli_messages.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from captioncast.cli import EXIT_USAGE
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from tests.conftest import speech_path
from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.model

NOT_AUDIO = "not an audio file, or a format FFmpeg cannot read"
RAW_FFMPEG = ("Errno", "'None'", "Traceback", "Invalid data found")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "captioncast.cli", *args],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@dataclass(frozen=True)
class BadFile:
    name: str
    content: bytes
    says: str


BAD_FILES = [
    BadFile("notes.txt", b"this is not audio\n" * 50, NOT_AUDIO),
    BadFile("noise.bin", bytes(range(256)) * 40, NOT_AUDIO),
    BadFile("empty.wav", b"", "empty file"),
]


@pytest.mark.parametrize("bad", BAD_FILES, ids=[b.name for b in BAD_FILES])
def test_transcribe_of_a_file_that_is_not_audio_is_bad_input(
        server: RunningServer, tmp_path: Path, bad: BadFile) -> None:
    path = tmp_path / bad.name
    path.write_bytes(bad.content)
    done = _cli("transcribe", str(path), "--server", server.url, "--no-progress")
    assert done.returncode == EXIT_USAGE, done.stderr  # as `stream` and the README say
    assert f"captioncast: {path}: " in done.stderr and bad.says in done.stderr, done.stderr
    for raw in RAW_FFMPEG:
        assert raw not in done.stderr, done.stderr


@pytest.mark.parametrize("path", ["/v1/transcribe", "/v1/transcribe?format=json"])
def test_the_server_names_a_file_it_cannot_decode_in_plain_words(
        server: RunningServer, path: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}",
                                     data=b"this is not audio\n" * 50, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    answer = json.loads(refused.value.read())
    assert answer == {"error": "bad_audio",
                      "message": f"cannot read the upload as audio: {NOT_AUDIO}"}


def test_the_overlay_without_a_channel_gives_the_overlay_path(server: RunningServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/overlay?lines=2", timeout=10)
    assert refused.value.code == 400
    message = json.loads(refused.value.read())["message"]
    assert "/overlay?channel=" in message and "/v1/captions" not in message


def test_the_server_says_ready_with_its_urls_once_it_takes_sessions(
        server: RunningServer) -> None:
    lines = server.log.read_text().splitlines()
    ready = [i for i, line in enumerate(lines) if line.startswith("captioncast: ready on ")]
    assert len(ready) == 1, lines
    base = f"127.0.0.1:{server.port}"
    line = lines[ready[0]]
    for url in (f"http://{base}/,", f"http://{base}/overlay?channel=NAME",
                f"ws://{base}/v1/stream"):
        assert url in line, line
    loaded = next(i for i, line in enumerate(lines) if "event=model_loaded" in line)
    listening = next(i for i, line in enumerate(lines) if "event=listening" in line)
    assert listening < loaded < ready[0]
    assert "sessions=after_model_load" in lines[listening]  # not "ready" before the model


def _first_stderr_line(args: list[str], timeout: float) -> str:
    """The first line `captioncast` writes to stderr (it goes on waiting: it is killed)."""
    process = subprocess.Popen([sys.executable, "-m", "captioncast.cli", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    got: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        got.append(process.stderr.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    process.kill()
    process.wait()
    return got[0] if got else ""


async def test_watch_of_a_channel_without_a_speaker_says_it_waits(
        server: RunningServer) -> None:
    args = ["watch", "nosuch", "--server", server.url]
    line = await asyncio.to_thread(_first_stderr_line, args, 30)
    # nobody ever spoke on it: no channel, which the watch itself (a viewer) does not make
    assert line.startswith("captioncast: no channel 'nosuch' yet: it starts when a speaker "
                           "publishes to it"), line
    assert "waiting for one (no channel is live" in line, line

    audio = [*rechunk(decode_pcm(str(speech_path("whisper_jfk"))), 3200), silence(1.0)]
    speaker = asyncio.create_task(stream(stream_url(server.url, channel="cli-live"), audio))
    try:
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(_is_live, server, "cli-live"):
            assert time.monotonic() < deadline, "the speaker never went live"
            await asyncio.sleep(0.1)
        line = await asyncio.to_thread(_first_stderr_line, args, 30)
        assert "live now: cli-live" in line, line
    finally:
        speaker.cancel()
        await asyncio.gather(speaker, return_exceptions=True)


def _is_live(server: RunningServer, channel: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/v1/channels", timeout=5) as r:
        return any(c["channel"] == channel and c["live"] for c in json.loads(r.read())["channels"])
