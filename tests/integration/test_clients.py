"""The command-line clients as a user runs them, and the mic client with a fake input stream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import srt
import webvtt

from captioncast_client.microphone import microphone_chunks
from captioncast_client.streaming import stream, stream_url
from tests.conftest import reference, speech_path, wer
from tests.integration.conftest import RunningServer, free_port

pytestmark = pytest.mark.model


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "captioncast.cli", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_stream_prints_the_jfk_clip_and_writes_caption_files(server: RunningServer,
                                                             tmp_path: Path) -> None:
    mp3 = tmp_path / "jfk.mp3"  # any format FFmpeg reads: make an MP3 from the WAV
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(speech_path("whisper_jfk")),
                    str(mp3)], check=True)
    srt_path, vtt_path = tmp_path / "jfk.srt", tmp_path / "jfk.vtt"
    done = _cli("stream", str(mp3), "--server", server.url, "--srt", str(srt_path),
                "--vtt", str(vtt_path))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and all(line.startswith("[00:00:") and " --> " in line for line in lines)
    printed = " ".join(line.split("] ", 1)[1] for line in lines)
    assert wer(reference("whisper_jfk"), printed) <= 0.15
    cues = list(srt.parse(srt_path.read_text()))
    assert " ".join(c.content for c in cues) == printed
    vtt = webvtt.read(str(vtt_path))
    assert [c.text for c in vtt] == [c.content for c in cues]


def test_stream_from_stdin_raw_pcm_fast(server: RunningServer) -> None:
    with wave.open(str(speech_path("libri_test_61-70968-0000"))) as w:
        pcm = w.readframes(w.getnframes())
    done = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "stream", "-", "--raw", "--fast", "--json",
         "--server", server.url], input=pcm, capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import json

    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert events[0]["type"] == "ready" and events[-1]["type"] == "end"
    text = " ".join(e["text"] for e in events if e["type"] == "final")
    assert wer(reference("libri_test_61-70968-0000"), text) <= 0.2


def test_clients_explain_a_server_that_is_down_or_refuses(server: RunningServer,
                                                          tmp_path: Path) -> None:
    wav = str(speech_path("libri_test_61-70968-0002"))
    down = _cli("stream", wav, "--server", f"ws://127.0.0.1:{free_port()}")
    assert down.returncode == 2
    assert "cannot reach captioncast" in down.stderr
    refused = _cli("stream", wav, "--server", server.url, "--language", "de")
    assert refused.returncode == 3
    assert "bad_request" in refused.stderr and "English-only" in refused.stderr
    missing = _cli("stream", str(tmp_path / "nope.wav"), "--server", server.url)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("this is not audio\n" * 50)
    bad = _cli("stream", str(not_audio), "--server", server.url)
    assert bad.returncode == 1 and "audio" in bad.stderr


class FakeInputStream:
    """Stands in for sounddevice.RawInputStream: plays a recording through the callback."""

    def __init__(self, *, samplerate: int, channels: int, dtype: str, device: Any,
                 blocksize: int, callback: Any, finished_callback: Any) -> None:
        assert channels == 1 and dtype == "int16"
        with wave.open(str(speech_path("libri_dev_1272-128104-0000"))) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        # the device runs at 48 kHz: the server must resample what the client sends
        import soxr

        self.audio = soxr.resample(pcm.astype(np.float32), 16000, samplerate).astype("<i2")
        self.audio = np.concatenate([self.audio, np.zeros(samplerate, "<i2")])
        self.blocksize, self.callback, self.finished = blocksize, callback, finished_callback
        self.rate = samplerate
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.closed = False

    def _run(self) -> None:
        import time

        for i in range(0, len(self.audio), self.blocksize):
            if self.closed:
                return
            block = self.audio[i : i + self.blocksize]
            self.callback(memoryview(block.tobytes()), len(block), None, None)
            time.sleep(len(block) / self.rate / 4)  # 4x real time keeps the test short
        self.finished()

    def __enter__(self) -> FakeInputStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True


async def test_mic_client_with_a_fake_input_stream(server: RunningServer) -> None:
    chunks = microphone_chunks(48000, stream_factory=FakeInputStream)
    result = await stream(stream_url(server.url, sample_rate=48000), chunks, realtime=False)
    assert result.events[-1]["type"] == "end"
    assert wer(reference("libri_dev_1272-128104-0000"), result.text) <= 0.2


async def test_mic_stops_cleanly_when_asked() -> None:
    stop = asyncio.Event()
    got: list[bytes] = []
    async for chunk in microphone_chunks(16000, stop=stop, stream_factory=FakeInputStream):
        got.append(chunk)
        if len(got) == 3:
            stop.set()
    assert len(got) == 3 and all(len(c) == 3200 for c in got)


class UnpluggedInputStream(FakeInputStream):
    """A device pulled out mid-sentence: it stops calling back and never says it finished."""

    def _run(self) -> None:
        import time

        cut = int(self.rate * 3.5)  # 3.5 s into the recording, then nothing
        for i in range(0, cut, self.blocksize):
            if self.closed:
                return
            self.callback(memoryview(self.audio[i : i + self.blocksize].tobytes()),
                          self.blocksize, None, None)
            time.sleep(self.blocksize / self.rate / 4)


async def test_a_microphone_that_stops_mid_stream_ends_it_with_its_finals() -> None:
    # no hang: the stalled device is reported, and what it captured is still captioned
    from captioncast_client.microphone import MicrophoneError

    chunks = microphone_chunks(48000, stream_factory=UnpluggedInputStream, stall_s=1.0)
    with pytest.raises(MicrophoneError, match="no audio for 1 s"):
        async with asyncio.timeout(30):
            async for _ in chunks:
                pass


async def test_stream_of_a_failing_source_raises_with_the_finals_it_got(
        server: RunningServer) -> None:
    from captioncast_client.errors import SourceFailed

    chunks = microphone_chunks(48000, stream_factory=UnpluggedInputStream, stall_s=1.0)
    with pytest.raises(SourceFailed, match="no audio for 1 s") as raised:
        async with asyncio.timeout(120):
            await stream(stream_url(server.url, sample_rate=48000), chunks, realtime=False,
                         bytes_per_second=96000)
    result = raised.value.result
    assert result is not None and result.events[-1]["type"] == "end"
    # the 3.5 s it captured: "Mister Quilter is the apostle of the middle classes ..."
    heard = result.text.lower()
    assert "quilter" in heard or "apostle" in heard, heard
