"""File transcription over HTTP: /v1/transcribe, OpenAI's form, the CLI; real model, real speech."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import srt
import webvtt

from tests.conftest import read_wav, reference, speech_path, wer
from tests.integration.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.model

CLIP = "libri_dev_1272-128104-0000"  # "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES..."
JFK = "whisper_jfk"  # four utterances


def post(server: RunningServer, path: str, body: bytes,
         headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=body,
                                     headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def encode(audio: np.ndarray, codec: str, container: str) -> bytes:
    """16 kHz float32 mono to a compressed file in memory, with PyAV."""
    out = io.BytesIO()
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with av.open(out, "w", format=container) as file:
        stream = file.add_stream(codec, rate=16000 if codec != "libopus" else 48000,
                                 layout="mono")
        resampler = av.AudioResampler(format=stream.format.name, layout="mono",
                                      rate=stream.rate)
        for i in range(0, len(pcm), 160_000):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 160_000], format="s16",
                                               layout="mono")
            frame.sample_rate = 16000
            for resampled in resampler.resample(frame):
                file.mux(stream.encode(resampled))
        file.mux(stream.encode(None))
    return out.getvalue()


def test_json_answer_has_text_language_duration_and_timed_segments(
        server: RunningServer) -> None:
    status, kind, body = post(server, "/v1/transcribe?words=true",
                              speech_path(CLIP).read_bytes())
    assert status == 200 and kind == "application/json"
    answer = json.loads(body)
    assert wer(reference(CLIP), answer["text"]) <= 0.1, answer["text"]
    assert answer["language"] == "en" and answer["duration"] == pytest.approx(5.855, abs=0.01)
    [segment] = answer["segments"]
    assert 0 <= segment["start"] < segment["end"] <= answer["duration"]
    words = segment["words"]
    assert len(words) == len(segment["text"].split())
    assert all(segment["start"] - 0.3 <= w["start"] <= w["end"] <= segment["end"] + 0.3
               for w in words)
    plain = json.loads(post(server, "/v1/transcribe", speech_path(CLIP).read_bytes())[2])
    assert "words" not in plain["segments"][0]  # words only when asked


def test_text_srt_and_vtt_answers(server: RunningServer) -> None:
    audio = speech_path(JFK).read_bytes()
    status, kind, text = post(server, "/v1/transcribe?format=text", audio)
    assert status == 200 and kind.startswith("text/plain")
    assert "ask not what your country can do for you" in text.decode().lower().replace(
        "!", "").replace(".", "").replace(",", "")
    status, kind, body = post(server, "/v1/transcribe?format=srt", audio)
    assert status == 200 and kind.startswith("application/x-subrip")
    cues = list(srt.parse(body.decode()))
    assert len(cues) >= 3 and all(c.start < c.end for c in cues)
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert cues[-1].end.total_seconds() <= 11.1
    status, kind, body = post(server, "/v1/transcribe?format=vtt", audio)
    assert status == 200 and kind.startswith("text/vtt")
    vtt = webvtt.from_buffer(io.StringIO(body.decode()))
    assert [c.text for c in vtt.captions] == [c.content for c in cues]


def test_ndjson_streams_finals_then_end_then_the_transcript(server: RunningServer) -> None:
    status, kind, body = post(server, "/v1/transcribe?format=ndjson",
                              speech_path(JFK).read_bytes())
    assert status == 200 and kind == "application/x-ndjson"
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert [e["type"] for e in events[-2:]] == ["end", "transcript"]
    finals = [e for e in events if e["type"] == "final"]
    assert [f["utterance"] for f in finals] == list(range(len(finals)))
    assert events[-1]["text"] == " ".join(f["text"] for f in finals if f["text"])


@pytest.mark.parametrize(("codec", "container"), [("libopus", "ogg"), ("flac", "flac"),
                                                  ("aac", "mp4")])
def test_compressed_files_decode_to_the_same_words(server: RunningServer, codec: str,
                                                   container: str) -> None:
    data = encode(read_wav(CLIP), codec, container)
    status, _, body = post(server, "/v1/transcribe", data)
    assert status == 200, body
    assert wer(reference(CLIP), json.loads(body)["text"]) <= 0.1


def test_raw_pcm_at_another_rate(server: RunningServer) -> None:
    audio = read_wav(CLIP)
    stereo_44k = np.repeat(np.interp(np.arange(0, len(audio), 16000 / 44100),
                                     np.arange(len(audio)), audio)[:, None], 2, axis=1)
    body = (stereo_44k * 32767).astype("<i2").tobytes()
    status, _, answer = post(
        server, "/v1/transcribe?encoding=pcm_s16le&sample_rate=44100&channels=2", body)
    assert status == 200, answer
    result = json.loads(answer)
    assert wer(reference(CLIP), result["text"]) <= 0.1
    assert result["duration"] == pytest.approx(len(audio) / 16000, abs=0.02)


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/transcribe", b"", "empty body"),
        ("/v1/transcribe", b"RIFF\x00\x00\x00\x00WAVEnot really" + bytes(range(256)) * 40,
         "audio"),
        ("/v1/transcribe", b"\x00\x01" * 5000 + b"\x00", "cannot read the upload as audio"),
        ("/v1/transcribe?encoding=pcm_s16le&sample_rate=16000", b"\x00" * 3001,
         "whole number"),
        ("/v1/transcribe?format=docx", b"x", "format must be one of"),
        ("/v1/transcribe?language=de", b"x", "English-only"),
        ("/v1/transcribe?beam=5", b"x", "unknown query parameter"),
    ],
)
def test_bad_uploads_get_400_with_a_message(server: RunningServer, path: str, body: bytes,
                                            needle: str) -> None:
    status, kind, answer = post(server, path, body)
    assert status == 400 and kind == "application/json"
    error = json.loads(answer)
    assert error["error"] in ("bad_request", "bad_audio") and needle in error["message"], error
    assert server.health()[0] == 200


def test_openai_sdk_against_audio_transcriptions(server: RunningServer) -> None:
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused",
                           max_retries=0)
    with speech_path(JFK).open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json",
            timestamp_granularities=["word", "segment"])
    assert "ask not" in verbose.text.lower()
    assert verbose.language == "en" and verbose.duration == pytest.approx(11.0, abs=0.05)
    assert verbose.segments and len(verbose.segments) >= 3
    assert verbose.words and verbose.words[0].start < verbose.words[-1].end <= 11.1
    with speech_path(CLIP).open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert wer(reference(CLIP), plain.text) <= 0.1
    with speech_path(CLIP).open("rb") as f:
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                       response_format="srt")
    assert next(srt.parse(str(subtitles))).content.startswith("Mr")
    with pytest.raises(openai.BadRequestError, match="cannot read the upload as audio"):
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("clip.wav", b"not audio at all" * 100))


def test_openai_form_as_curl_sends_it(server: RunningServer) -> None:
    """`curl -F file=@clip.wav`: no model field is an error in OpenAI's shape, with it a
    transcript."""
    def form(fields: dict[str, str], file: bytes | None) -> tuple[bytes, str]:
        boundary = "----captioncast-test"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                 .encode() for k, v in fields.items()]
        if file is not None:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                         f'filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
                         + file + b"\r\n")
        return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
            f"multipart/form-data; boundary={boundary}"

    audio = speech_path(CLIP).read_bytes()
    body, kind = form({"model": "whisper-1", "response_format": "text"}, audio)
    status, _, answer = post(server, "/v1/audio/transcriptions", body, {"Content-Type": kind})
    assert status == 200 and wer(reference(CLIP), answer.decode()) <= 0.1
    body, kind = form({"response_format": "json"}, audio)
    status, _, answer = post(server, "/v1/audio/transcriptions", body, {"Content-Type": kind})
    assert status == 400 and "model" in json.loads(answer)["error"]["message"]
    body, kind = form({"model": "whisper-1"}, None)
    status, _, answer = post(server, "/v1/audio/transcriptions", body, {"Content-Type": kind})
    assert status == 400 and "file" in json.loads(answer)["error"]["message"]
    status, _, answer = post(server, "/v1/audio/transcriptions", audio,
                             {"Content-Type": "audio/wav"})
    assert status == 400 and "multipart/form-data" in json.loads(answer)["error"]["message"]


def test_cli_transcribe_writes_srt(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "jfk.srt"
    done = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "transcribe", str(speech_path(JFK)),
         "--server", f"127.0.0.1:{server.port}", "--format", "srt", "-o", str(out)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cues = list(srt.parse(out.read_text()))
    assert len(cues) >= 3 and "country" in " ".join(c.content for c in cues).lower()
    missing = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "transcribe", str(tmp_path / "nope.wav"),
         "--server", f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no such file" in missing.stderr


LONG_MINUTES = 40


@pytest.fixture(scope="module")
def small_limit_server() -> Iterator[RunningServer]:
    running = start_server("--max-upload-mb", "2", name="upload-limit")
    yield running
    stop_server(running)


def _peak_rss_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_a_long_upload_is_transcribed_in_bounded_memory(
        small_limit_server: RunningServer) -> None:
    """40 minutes (150 MB as float32 samples, 77 MB as 16-bit) of mostly silence with speech
    in three places, as a 1 MB FLAC: the server's peak memory grows far less than the audio."""
    speech = read_wav(CLIP)
    audio = np.zeros(LONG_MINUTES * 60 * 16000, dtype=np.float32)
    places = [60, LONG_MINUTES * 30, LONG_MINUTES * 60 - 30]
    for second in places:
        audio[second * 16000: second * 16000 + len(speech)] = speech
    data = encode(audio, "flac", "flac")
    del audio
    assert len(data) < 2 * 1024 * 1024
    pid = small_limit_server.process.pid
    post(small_limit_server, "/v1/transcribe", speech_path(CLIP).read_bytes())  # warm up
    _peak_rss_reset(pid)
    before = _kib(pid, "VmRSS")
    started = time.monotonic()
    status, _, body = post(small_limit_server, "/v1/transcribe", data)
    elapsed = time.monotonic() - started
    growth_mb = (_kib(pid, "VmHWM") - before) / 1024
    assert status == 200, body
    answer = json.loads(body)
    assert answer["duration"] == pytest.approx(LONG_MINUTES * 60, abs=0.1)
    starts = [s["start"] for s in answer["segments"]]
    assert len(starts) == 3 and all(abs(s - p) < 1.0 for s, p in zip(starts, places)), starts
    assert growth_mb < 60, f"peak memory grew {growth_mb:.0f} MB for a {LONG_MINUTES} min file"
    print(f"long upload: {LONG_MINUTES} min in {elapsed:.1f} s, peak RSS +{growth_mb:.1f} MB")


def test_an_upload_over_the_limit_gets_413(small_limit_server: RunningServer) -> None:
    status, _, body = post(small_limit_server, "/v1/transcribe", b"\x00" * (3 * 1024 * 1024))
    assert status == 413 and "limit" in json.loads(body)["message"]
    assert small_limit_server.health()[0] == 200
